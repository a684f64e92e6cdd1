"""Training the prior on token grids: AdamW, checkpoints with exact resume, DDP.

The checkpoint ``<run dir>/checkpoints/prior.pt`` (written atomically, read with
``weights_only=True``) holds the model, the optimiser, the step and the RNG state, plus
the prior config and the tokenizer it was trained on. A resumed run draws the same
batches (:class:`~dcvq.data.StepSampler` from the checkpoint's step) and the same
dropout masks as an uninterrupted one, so it ends with the same weights.

Under DDP (``WORLD_SIZE > 1``) every rank holds all tokens and reads its share of each
global batch; gradients are averaged by ``DistributedDataParallel``. On a preemption
signal (Slurm, submitit) the step ends, the checkpoint is written and the signal is
handed on, as the training loop does (:mod:`dcvq.runtime.stop`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dcvq.checkpoint import read_checkpoint, rng_state, save_checkpoint, set_rng_state
from dcvq.config.diff import config_changes
from dcvq.data import StepSampler
from dcvq.prior.model import grids_to_sequence
from dcvq.runtime.distributed import DistEnv, amp_dtype
from dcvq.runtime.stop import StopSignals

log = logging.getLogger(__name__)

CHECKPOINT = Path("checkpoints") / "prior.pt"
LN2 = math.log(2)
# What a checkpoint must agree on with the run resuming it: the tokens it was trained on.
TOKEN_KEYS = ("codebook_names", "codebook_sizes", "grid", "step")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices (linear weights, embedding tables), none on biases, norms,
    the start vector and position embeddings (GPT-2 / LlamaGen practice)."""
    decay, plain = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and name != "pos" else plain).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


class PriorTrainer:
    """Trains ``model`` (a :class:`~dcvq.prior.model.TokenPrior`, built after
    ``torch.manual_seed(prior.seed)`` on every rank) with the ``prior`` config ``p``.

    ``tokens``: what the prior is trained on (``codebook_names``, ``codebook_sizes``,
    ``grid``, and the tokenizer's ``checkpoint`` and ``step``), stored in its checkpoint.
    """

    def __init__(
        self,
        model: nn.Module,
        p: DictConfig,
        run_dir: str | Path,
        device: torch.device,
        dist: DistEnv,
        tokens: dict[str, Any],
    ) -> None:
        self.p, self.device, self.dist, self.tokens = p, device, dist, tokens
        self.run_dir = Path(run_dir)
        self.ckpt_path = self.run_dir / CHECKPOINT
        self.model = model.to(device)
        self.dtype = amp_dtype(p.precision, device)
        self.opt = torch.optim.AdamW(
            param_groups(self.model, p.weight_decay),
            lr=p.lr,
            betas=tuple(p.betas),
            fused=device.type == "cuda",
        )
        self.step = 0
        self.ddp = self.model
        if dist.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)

    def lr_at(self, step: int) -> float:
        """Linear warm-up over ``prior.warmup_steps``, then constant."""
        warm = self.p.warmup_steps
        return self.p.lr * min(1.0, (step + 1) / warm) if warm else self.p.lr

    # ---- state -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "prior",
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "rng": rng_state(self.device),
            "config": OmegaConf.to_yaml(self.p, resolve=True),
            "tokens": self.tokens,
        }

    def save(self) -> None:
        if self.dist.is_main:
            save_checkpoint(self.state_dict(), self.ckpt_path)

    def maybe_resume(self) -> None:
        if not self.ckpt_path.is_file():
            return
        if not self.p.resume:
            log.warning(
                "prior.resume=false: starting from step 0; %s is not loaded and will be "
                "overwritten at the first save",
                self.ckpt_path,
            )
            return
        state = read_checkpoint(self.ckpt_path, map_location=self.device)
        if state.get("kind") != "prior":
            raise RuntimeError(f"{self.ckpt_path} is not a prior checkpoint")
        saved = state.get("tokens", {})
        differ = [k for k in TOKEN_KEYS if saved.get(k) != self.tokens.get(k)]
        if differ:
            raise RuntimeError(
                f"cannot resume from {self.ckpt_path}: it was trained on the tokens of "
                f"{saved.get('checkpoint')} (step {saved.get('step')}), not of "
                f"{self.tokens['checkpoint']} (step {self.tokens['step']}): "
                + ", ".join(f"{k} {saved.get(k)} -> {self.tokens.get(k)}" for k in differ)
                + ". Use a new run directory for this tokenizer; the checkpoint is left as it is."
            )
        try:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as e:
            changed = config_changes(state.get("config", ""), self.p, ("model",))
            raise RuntimeError(
                f"cannot resume from {self.ckpt_path}: it was written with another prior "
                f"configuration ({', '.join(f'prior.{c}' for c in changed) or 'see below'}). "
                "Use a new run directory; the checkpoint is left as it is.\n" + str(e)
            ) from e
        self.step = int(state["step"])
        set_rng_state(state["rng"], self.device)
        log.info("prior resumed from %s at step %d", self.ckpt_path, self.step)

    # ---- steps -------------------------------------------------------------------
    def train_step(self, grids: Tensor) -> dict[str, float]:
        """One optimiser step on a batch of ``B x K x h x w`` token grids."""
        self.model.train()
        lr = self.lr_at(self.step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        seq = grids_to_sequence(grids).to(self.device, torch.long, non_blocking=True)
        ctx = torch.autocast(self.device.type, self.dtype) if self.dtype else nullcontext()
        with ctx:
            nll = self.ddp(seq)  # B x positions x K, nats
        loss = nll.mean()
        loss.backward()
        per_codebook = nll.detach().mean((0, 1)) / LN2
        bad = per_codebook.isfinite().all().logical_not().float().reshape(1)
        if self.dist.enabled:  # every rank stops together
            torch.distributed.all_reduce(bad)
        if bad.item() > 0:
            raise FloatingPointError(
                f"non-finite prior loss at step {self.step}; the last checkpoint "
                f"{self.ckpt_path} is intact. Lower prior.lr or use prior.precision=fp32."
            )
        if self.p.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.p.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        bits = dict(zip(self.tokens["codebook_names"], per_codebook.tolist(), strict=True))
        return (
            {"bits_per_token": sum(bits.values())}
            | {f"bits_per_token_{k}": v for k, v in bits.items()}
            | {"lr": lr}
        )

    # ---- loop --------------------------------------------------------------------
    def fit(self, grids: Tensor, progress: bool = False) -> dict[str, Any]:
        """Train on ``grids`` (``N x K x h x w``, every rank the same) to ``prior.max_steps``,
        resuming from the run dir's checkpoint; returns the last step's logs and speed."""
        self.maybe_resume()
        p = self.p
        sampler = StepSampler(
            len(grids), p.batch_size, p.seed, start_step=self.step,
            rank=self.dist.rank, world_size=self.dist.world_size,
        )  # fmt: skip
        order = iter(sampler)
        tokens_per_step = p.batch_size * self.dist.world_size * grids[0].numel()
        bar = tqdm(
            total=p.max_steps, initial=self.step, desc="prior",
            disable=not (progress and self.dist.is_main), dynamic_ncols=True,
        )  # fmt: skip
        logs: dict[str, float] = {}
        start_step, start = self.step, time.perf_counter()
        try:
            with StopSignals(
                env=self.dist, device=self.device, action="checkpointing at the end of this step"
            ) as stop:
                while self.step < p.max_steps:
                    batch = torch.tensor([next(order)[0] for _ in range(p.batch_size)])
                    logs = self.train_step(grids[batch])
                    bar.update(1)
                    if self.step % p.log_every == 0 or self.step in (1, p.max_steps):
                        self.record(logs, tokens_per_step, start_step, start)
                        bar.set_postfix(bits=f"{logs['bits_per_token']:.3f}")
                    saved = self.step % p.ckpt_every == 0 or self.step == p.max_steps
                    if saved:
                        self.save()
                    stop.stop_here(partial(self.save_after_signal, saved))
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        steps = self.step - start_step
        speed = tokens_per_step * steps / seconds if steps and seconds > 0 else None
        return {"last": logs, "seconds": seconds, "steps_run": steps, "tokens_per_s": speed}

    def save_after_signal(self, saved: bool) -> None:
        """The checkpoint of the step a signal ended, unless the step wrote it."""
        if not saved:
            self.save()
        log.warning("prior checkpoint written at step %d after a signal", self.step)

    def record(self, logs: dict[str, float], tokens_per_step: int, start_step: int, start: float):
        if not self.dist.is_main:
            return
        elapsed = time.perf_counter() - start
        speed = tokens_per_step * (self.step - start_step) / elapsed if elapsed > 0 else None
        line = {"step": self.step} | logs | {"tokens_per_s": speed}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "prior_train.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
