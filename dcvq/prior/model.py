"""The autoregressive transformer over token grids (the factorisation: :mod:`dcvq.prior`).

A decoder-only, pre-norm GPT: learned absolute position embeddings over the
``h * w * K`` token slots, causal self-attention (``scaled_dot_product_attention``),
GELU MLP. Each codebook has its own embedding table and its own output head: the token
at slot ``t`` belongs to codebook ``t % K`` and is predicted by that codebook's head from
the hidden state of slot ``t``, whose input is the previous token (a learned start vector
at slot 0). Sampling runs with a key/value cache, one token per step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def grids_to_sequence(grids: Tensor) -> Tensor:
    """``B x K x h x w`` indices -> ``B x (h*w*K)``: raster order over positions, the K
    codebooks' tokens of a position next to each other (codebook 0 first)."""
    return grids.permute(0, 2, 3, 1).reshape(grids.shape[0], -1)


def sequence_to_grids(seq: Tensor, codebooks: int, h: int, w: int) -> Tensor:
    """The inverse of :func:`grids_to_sequence`."""
    return seq.reshape(seq.shape[0], h, w, codebooks).permute(0, 3, 1, 2).contiguous()


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, cache: list[Tensor] | None = None, at: int = 0) -> Tensor:
        """``x``: ``B x T x D``, causal. With ``cache`` (``[keys, values]``, ``B x H x L x
        Dh`` each), ``x`` is the one slot ``at``: its key and value are stored and it
        attends to every slot up to its own."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if cache is None:
            p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            cache[0][:, :, at : at + 1] = k
            cache[1][:, :, at : at + 1] = v
            y = F.scaled_dot_product_attention(
                q, cache[0][:, :, : at + 1], cache[1][:, :, : at + 1]
            )
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = Attention(width, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, cache: list[Tensor] | None = None, at: int = 0) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x), cache, at))
        return x + self.drop(self.mlp(self.ln2(x)))


class TokenPrior(nn.Module):
    """``p(tokens) = prod_t p(x_t | x_<t)`` over the ``h x w x K`` tokens of an image.

    ``codebook_sizes`` and ``grid`` (``h, w``) come from the tokenizer; the other
    arguments are the ``prior.model`` config. ``seq_len`` and ``vocab_sizes`` are
    optional fixed sizes (a prior meant for one tokenizer shape): given, they must equal
    the tokenizer's, else a ``ValueError`` names the key.
    """

    def __init__(
        self,
        codebook_sizes: Sequence[int],
        grid: Sequence[int],
        layers: int = 2,
        width: int = 64,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        seq_len: int | None = None,
        vocab_sizes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.codebook_sizes = tuple(int(n) for n in codebook_sizes)
        self.grid = (int(grid[0]), int(grid[1]))
        self.codebooks = len(self.codebook_sizes)
        self.positions = self.grid[0] * self.grid[1]
        self.seq_len = self.positions * self.codebooks
        if seq_len is not None and seq_len != self.seq_len:
            raise ValueError(
                f"prior.model.seq_len={seq_len} does not fit the tokenizer: its token grid is "
                f"{self.grid[0]} x {self.grid[1]} positions x {self.codebooks} codebook(s) = "
                f"{self.seq_len} tokens; set prior.model.seq_len={self.seq_len} or null"
            )
        if vocab_sizes is not None and tuple(vocab_sizes) != self.codebook_sizes:
            raise ValueError(
                f"prior.model.vocab_sizes={list(vocab_sizes)} does not fit the tokenizer's "
                f"codebook sizes {list(self.codebook_sizes)}; set it to that or null"
            )
        if width % heads:
            raise ValueError(f"prior.model.heads={heads} must divide prior.model.width={width}")
        if layers < 1 or width < 1 or not 0 <= dropout < 1:
            raise ValueError(
                f"prior.model: layers={layers} and width={width} must be >= 1, "
                f"dropout={dropout} in [0, 1)"
            )
        self.width, self.heads = width, heads
        self.embeddings = nn.ModuleList(nn.Embedding(n, width) for n in self.codebook_sizes)
        self.start = nn.Parameter(torch.zeros(width))
        self.pos = nn.Parameter(torch.zeros(self.seq_len, width))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.heads_out = nn.ModuleList(nn.Linear(width, n, bias=False) for n in self.codebook_sizes)
        self._init(layers)

    def _init(self, layers: int) -> None:
        # GPT-2's: N(0, 0.02), residual projections scaled by the depth
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * layers))
        nn.init.normal_(self.start, std=0.02)
        nn.init.normal_(self.pos, std=0.02)

    # ---- teacher-forced likelihood -------------------------------------------------
    def logits(self, seq: Tensor) -> list[Tensor]:
        """``B x L`` tokens (:func:`grids_to_sequence`) -> one ``B x (h*w) x N_k`` logits
        tensor per codebook: entry ``[:, p]`` of codebook ``k`` predicts the token of
        position ``p``, codebook ``k``, from every token before it in the sequence."""
        b = seq.shape[0]
        tokens = seq.view(b, self.positions, self.codebooks)
        x = torch.stack([emb(tokens[..., k]) for k, emb in enumerate(self.embeddings)], 2)
        x = torch.cat([self.start.expand(b, 1, -1), x.flatten(1, 2)[:, :-1]], 1)
        h = self.drop(x + self.pos)
        for block in self.blocks:
            h = block(h)
        h = self.ln_f(h).view(b, self.positions, self.codebooks, -1)
        return [head(h[:, :, k]) for k, head in enumerate(self.heads_out)]

    def forward(self, seq: Tensor) -> Tensor:
        """``B x L`` tokens -> ``B x (h*w) x K`` negative log-likelihoods in nats (float32,
        cross-entropy in fp32 under autocast). The forward, so that DDP wraps it."""
        target = seq.view(seq.shape[0], self.positions, self.codebooks)
        return torch.stack(
            [
                F.cross_entropy(lg.float().transpose(1, 2), target[..., k], reduction="none")
                for k, lg in enumerate(self.logits(seq))
            ],
            2,
        )

    # ---- sampling ----------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
    ) -> Tensor:
        """``n`` token grids ``n x K x h x w`` (int64), one token at a time with a key/value
        cache; ``top_k`` keeps the k most likely codes of each step (None: all). Call it
        in eval mode (no dropout)."""
        device = self.pos.device
        dtype = self.pos.dtype
        shape = (n, self.heads, self.seq_len, self.width // self.heads)
        caches = [
            [torch.empty(shape, device=device, dtype=dtype) for _ in range(2)] for _ in self.blocks
        ]
        out = torch.empty(n, self.seq_len, dtype=torch.long, device=device)
        x = self.start.expand(n, 1, -1)
        for t in range(self.seq_len):
            h = x + self.pos[t]
            for block, cache in zip(self.blocks, caches, strict=True):
                h = block(h, cache, t)
            k = t % self.codebooks
            logits = self.heads_out[k](self.ln_f(h[:, 0])).float() / temperature
            if top_k is not None and top_k < logits.shape[1]:
                kth = logits.topk(top_k, dim=1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            token = torch.multinomial(logits.softmax(1), 1, generator=generator)
            out[:, t] = token[:, 0]
            if t + 1 < self.seq_len:
                x = self.embeddings[k](token)  # x_t, input of slot t + 1
        return sequence_to_grids(out, self.codebooks, *self.grid)
