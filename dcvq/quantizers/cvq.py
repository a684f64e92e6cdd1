"""Online clustered codebook (CVQ-VAE, Zheng & Vedaldi, ICCV 2023): the CVQ baseline row.

Nearest-neighbour VQ (squared L2 or cosine) whose codebook is kept alive during training:

1. an EMA of each code's share of the batch, ``embed_prob`` (a checkpointed buffer), is
   updated with the batch's code histogram;
2. every code is pulled towards an *anchor* feature drawn from the batch,
   ``e_k <- (1 - a_k) e_k + a_k f_k`` with ``a_k = exp(-embed_prob_k * N * 10 / (1 - decay)
   - 1e-3)``: ``a_k`` is ~0.999 for a code nobody uses and underflows to exactly 0 for a
   code with a healthy share, so only dead or dying codes move;
3. optionally, a contrastive term pulls each code towards its closest features and away
   from its farthest half.

Anchors (the release's three options): ``closest`` = the batch feature most similar to the
code, ``probrandom`` = a feature drawn with probability ``softmax(similarity)`` over the
batch, ``random`` = a feature from a pool of recent batch features.

The quantization of the current batch uses the codebook from *before* the update (as in
the release); the re-initialised codes are seen from the next forward on.

Distributed training: the update is applied in ``forward`` and must be bit-identical on
every rank, or the replicas drift apart (and DDP never re-syncs parameters). With
``torch.distributed`` initialised, the code histogram is all-reduced and the anchors are
computed from the union of all ranks' batches, then rank 0's anchors (and feature pool)
are broadcast. These collectives run in every training-mode forward, so all ranks must run
the same number of training-mode forwards; eval-mode forwards communicate nothing.
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from dcvq.quantizers.base import (
    Quantizer,
    QuantizerOutput,
    code_counts,
    commitment_loss,
    straight_through,
)
from dcvq.quantizers.codebooks import Codebook
from dcvq.quantizers.search import DISTANCE_CHUNK_ELEMENTS

DISTANCES = ("l2", "cos")
ANCHORS = ("closest", "random", "probrandom", "none")


def _world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _all_gather(t: Tensor) -> Tensor:
    """``world x *t.shape``, rank order (list form: gloo lacks all_gather_into_tensor)."""
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.contiguous())
    return torch.stack(out)


class CVQQuantizer(Quantizer):
    """CVQ-VAE's ``VectorQuantiser`` behind the :class:`Quantizer` interface.

    Defaults are the release's ``main.py`` (``distance="cos"``, ``anchor="closest"``, no
    ``first_batch``, no contrastive term, ``beta=0.25``, usage EMA ``decay=0.99``).
    ``anchor="none"`` keeps the usage EMA but never re-initialises (plain VQ).
    """

    codebook_names = ("codebook",)

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        beta: float = 0.25,
        decay: float = 0.99,
        distance: str = "cos",
        anchor: str = "closest",
        first_batch: bool = False,
        contras_loss: bool = False,
        contras_temperature: float = 0.07,
        legacy_beta: bool = False,
    ) -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"quantizer.distance must be one of {DISTANCES}, got {distance!r}")
        if anchor not in ANCHORS:
            raise ValueError(f"quantizer.anchor must be one of {ANCHORS}, got {anchor!r}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"quantizer.decay must be in [0, 1), got {decay}")
        self.dim = dim
        self.codebook_sizes = (codebook_size,)
        self.beta, self.legacy_beta = beta, legacy_beta
        self.decay = decay
        self.distance, self.anchor = distance, anchor
        self.first_batch = first_batch
        self.contras_loss = contras_loss
        self.contras_temperature = contras_temperature
        # the release's init: uniform [-1/N, 1/N], like taming
        self.codebook = Codebook(codebook_size, dim)
        # EMA of each code's share of the batch; the release's name, kept for cross-reading
        self.register_buffer("embed_prob", torch.zeros(codebook_size))
        # first_batch mode re-initialises once; a buffer so that resuming does not redo it
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        if anchor == "random":
            self.register_buffer("pool", (torch.rand(codebook_size, dim) * 2 - 1) / codebook_size)
            self.register_buffer("pool_count", torch.zeros((), dtype=torch.long))

    def codebook_parameters(self) -> list[nn.Parameter]:
        return list(self.codebook.parameters())

    # ------------------------------------------------------------------ lookup
    def _scan(self, feats: Tensor, codes: Tensor, contrastive: bool) -> dict[str, Tensor]:
        """One pass over code chunks: nearest code per feature, plus the per-code
        statistics the anchors and the contrastive term need (training only).

        Similarity is "larger is closer": ``-|z - e|^2`` or cosine. Without the contrastive
        term only one ``M x chunk`` block is alive at a time, whatever N (with it, autograd
        keeps every block for the backward pass).
        """
        m, n = feats.shape[0], codes.shape[0]
        train = self.training
        if self.distance == "cos":
            zkey = F.normalize(feats, dim=1)
        else:
            zsq = feats.pow(2).sum(1, keepdim=True)
        best_val = torch.full((m,), float("-inf"), device=feats.device)
        best_idx = torch.zeros(m, dtype=torch.long, device=feats.device)
        col_val, col_arg, col_lse = [], [], []
        contra = feats.new_zeros(())
        chunk = max(1, DISTANCE_CHUNK_ELEMENTS // max(m, 1))
        for start in range(0, n, chunk):
            part = codes[start : start + chunk]
            # the contrastive term is the only consumer of similarity gradients (to codes)
            with contextlib.nullcontext() if contrastive else torch.no_grad():
                if self.distance == "cos":
                    sim = zkey @ F.normalize(part, dim=1).t()
                else:
                    sim = 2 * feats @ part.t() - zsq - part.pow(2).sum(1)
            sd = sim.detach()
            v, i = sd.max(1)
            better = v > best_val
            best_val = torch.where(better, v, best_val)
            best_idx = torch.where(better, i + start, best_idx)
            if train and self.anchor == "closest":
                cv, ci = sd.max(0)
                col_val.append(cv)
                col_arg.append(ci)
            elif train and self.anchor == "probrandom":
                col_arg.append(torch.multinomial(F.softmax(sd.t(), dim=1), 1).view(-1))
                # per-code normaliser over this rank's batch, to merge ranks exactly
                col_lse.append(torch.logsumexp(sd, dim=0))
            if contrastive:
                contra = contra + self._contrastive_sum(sim)
        out = {"idx": best_idx, "contra": contra / n}
        if col_arg:
            out["col_arg"] = torch.cat(col_arg)
        if col_val:
            out["col_val"] = torch.cat(col_val)
        if col_lse:
            out["col_lse"] = torch.cat(col_lse)
        return out

    def _contrastive_sum(self, sim: Tensor) -> Tensor:
        """Sum over this chunk's codes of the release's InfoNCE: positive = mean of the
        ``M // N`` most similar features, negatives = the ``M // 2`` least similar."""
        m, c = sim.shape
        n = self.codebook_sizes[0]
        pos = sim.topk(max(1, m // n), dim=0).values.mean(0, keepdim=True)
        neg = sim.topk(m // 2, dim=0, largest=False).values
        logits = torch.cat([pos, neg], 0).t() / self.contras_temperature
        target = torch.zeros(c, dtype=torch.long, device=sim.device)
        return F.cross_entropy(logits, target, reduction="sum")

    # ------------------------------------------------------------------ forward
    def forward(self, z: Tensor) -> QuantizerOutput:
        # fp32: bf16 similarities pick wrong codes and make the usage EMA coarse.
        with torch.autocast(z.device.type, enabled=False):
            z = z.float()
            b, d, h, w = z.shape
            n = self.codebook_sizes[0]
            flat = z.permute(0, 2, 3, 1).reshape(-1, d)
            weight = self.codebook()
            # The training update rewrites the weight in place; the graph must hold a copy
            # (gradients still reach the parameter through the clone).
            codes = weight.clone() if self.training else weight
            contrastive = self.training and self.contras_loss
            scan = self._scan(flat.detach(), codes, contrastive)
            idx = scan["idx"]
            q = codes[idx].view(b, h, w, d).permute(0, 3, 1, 2)
            loss = commitment_loss(z, q, self.beta, self.legacy_beta)
            if contrastive:
                loss = loss + scan["contra"]
            counts = code_counts(idx, n)
            if self.training:
                self._online_update(flat.detach(), counts, scan)
            return QuantizerOutput(
                z_q=straight_through(z, q),
                loss=loss,
                indices=idx.view(b, 1, h, w),
                losses={"codebook": loss.detach()},
                counts={"codebook": counts},
            )

    def decode_indices(self, indices: Tensor) -> Tensor:
        return self.codebook()[indices[:, 0]].float().permute(0, 3, 1, 2).contiguous()

    # ------------------------------------------------------------------ online update
    @torch.no_grad()
    def _online_update(self, feats: Tensor, counts: Tensor, scan: dict[str, Tensor]) -> None:
        n = self.codebook_sizes[0]
        world = _world_size()
        stats = torch.cat([counts.float(), feats.new_tensor([feats.shape[0]])])
        if world > 1:
            # integer-valued float sums: exact, hence identical on every rank
            dist.all_reduce(stats)
        total = int(stats[-1].item())
        self.embed_prob.mul_(self.decay).add_(stats[:-1] / total, alpha=1 - self.decay)
        if self.anchor == "none" or (self.first_batch and bool(self.initialised)):
            return
        anchors = self._anchors(feats, scan, total)
        if world > 1:
            dist.broadcast(anchors, src=0)
        # the release's constants: 10 and the 1e-3 floor that keeps dead codes at 0.1% of
        # their old value
        a = torch.exp(-(self.embed_prob * n * 10) / (1 - self.decay) - 1e-3).unsqueeze(1)
        weight = self.codebook.embedding.weight
        weight.copy_(weight * (1 - a) + anchors * a)
        if self.first_batch:
            self.initialised.fill_(True)

    def _anchors(self, feats: Tensor, scan: dict[str, Tensor], total: int) -> Tensor:
        """``N x d`` anchor per code, drawn from the union of all ranks' batches."""
        n = self.codebook_sizes[0]
        world = _world_size()
        ar = torch.arange(n, device=feats.device)
        if self.anchor == "closest":
            local = feats[scan["col_arg"]]
            if world == 1:
                return local
            # best rank per code (lowest rank on ties): deterministic from gathered data
            best_rank = _all_gather(scan["col_val"]).argmax(0)
            return _all_gather(local)[best_rank, ar]
        if self.anchor == "probrandom":
            local = feats[scan["col_arg"]]
            if world == 1:
                return local
            # rank r w.p. exp(lse_r) / sum exp(lse), then the rank's own sample: exactly
            # softmax over the union of the batches
            rank_p = F.softmax(_all_gather(scan["col_lse"]).t(), dim=1)
            rank = torch.multinomial(rank_p, 1).view(-1)
            return _all_gather(local)[rank, ar]
        return self._update_pool(feats, total)

    def _update_pool(self, feats: Tensor, total: int) -> Tensor:
        """The release's ``FeaturePool.query`` over the global batch of ``total`` features:
        a large batch replaces the whole pool with features drawn (with replacement) from
        it; a small one fills the pool, then overwrites random slots."""
        n = self.codebook_sizes[0]
        if total > n:
            self.pool.copy_(self._sample_global(feats, n))
            self.pool_count.fill_(n)
        else:
            fresh = self._gather_global(feats)
            count = int(self.pool_count)
            if count < n:
                # the release overruns the pool here; the features that do not fit are dropped
                take = min(n - count, total)
                self.pool[count : count + take] = fresh[:take]
                self.pool_count.fill_(count + take)
            else:
                slots = torch.randperm(n, device=feats.device)[:total]
                self.pool[slots] = fresh
        if _world_size() > 1:
            dist.broadcast(self.pool, src=0)
        return self.pool.clone()

    @staticmethod
    def _sample_global(feats: Tensor, k: int) -> Tensor:
        """``k`` features drawn uniformly, with replacement, from all ranks' batches."""
        local = feats[torch.randint(feats.shape[0], (k,), device=feats.device)]
        if _world_size() == 1:
            return local
        sizes = _all_gather(torch.tensor([feats.shape[0]], device=feats.device)).view(-1)
        rank = torch.multinomial(sizes.float(), k, replacement=True)
        return _all_gather(local)[rank, torch.arange(k, device=feats.device)]

    @staticmethod
    def _gather_global(feats: Tensor) -> Tensor:
        """All ranks' features in rank order (only used for batches smaller than N)."""
        if _world_size() == 1:
            return feats
        sizes = _all_gather(torch.tensor([feats.shape[0]], device=feats.device)).view(-1)
        padded = feats.new_zeros(int(sizes.max()), feats.shape[1])
        padded[: feats.shape[0]] = feats
        gathered = _all_gather(padded)
        return torch.cat([gathered[r, : int(s)] for r, s in enumerate(sizes.tolist())])
