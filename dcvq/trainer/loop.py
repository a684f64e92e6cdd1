"""The training loop: one autoencoder step and one discriminator step per batch.

Differences from taming's Lightning module, on purpose: the autoencoder forward runs
once per batch (taming re-runs it for the discriminator step), and the discriminator
is skipped entirely before ``loss.disc_start`` (taming multiplies it by zero).

Slurm's preemption and time-limit signals (:mod:`dcvq.runtime.stop`) checkpoint the run
at a step boundary. The handler only records the signal; at the end of each step the
loop writes a checkpoint of a consistent state and hands the signal on to whoever
handled it before: submitit's handler requeues the job on USR2 (the requeued job resumes
from the checkpoint in the same run dir) and ignores SIGTERM. Without such a handler (a
plain process, torchrun) the run exits with status 128 + signal.

Where a signal can arrive, and what happens (:meth:`Trainer.fit`):

- The handler is installed just before the data-loader workers start and kept until the
  final evaluation and the logger are done. Slurm signals every process of the job step,
  workers included: they ignore the signal and go on serving batches
  (:mod:`dcvq.data.workers`), the main process alone decides.
- Mid-step or during a checkpoint write: recorded; the write completes (it is atomic
  anyway: temp file + rename) and the step ends as usual, then the checkpoint of that
  step is written (once: not again if the step's periodic one was) and the signal handed
  on.
- During an evaluation: it stops before its next batch (a signal announces a deadline,
  and an evaluation can take minutes), records nothing (no metrics.jsonl line, no
  eval.json) and the checkpoint is written and the signal handed on as above. If the
  handler lets the run go on (submitit's SIGTERM), a periodic evaluation is skipped and
  the final one starts again. A requeued run resumes at the checkpoint's step: it does
  not repeat an interrupted periodic evaluation, and does the final one.
- After the final evaluation wrote eval.json: the run is complete; the signal is logged
  and dropped and the run ends normally (a requeue would only evaluate again).
- Before that (building the model and the data sets, which can take minutes, resuming):
  the previous handler acts at once, as nothing was trained since the last checkpoint
  (submitit requeues, a plain process ends).

Under DDP every rank stops at the same step: the ranks agree on the signal any of them
received (the requeue signal wins over SIGTERM), so that a rank the signal did not
reach hands the same signal on. If the handler ends the process on any rank (submitit
requeues and exits on rank 0 only), every rank ends.
"""

from __future__ import annotations

import json
import logging
import math
import signal
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from dcvq.build import (
    build_dataset,
    build_eval_loader,
    build_loss,
    build_model,
    resolve_num_workers,
)
from dcvq.checkpoint import (
    read_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_text_atomic,
)
from dcvq.config import validate
from dcvq.config.diff import config_changes, result_changes
from dcvq.data import StepSampler, collate, dataset_info
from dcvq.data.workers import SignalSafeLoader
from dcvq.errors import ConfigError
from dcvq.images import save_reconstruction_grid
from dcvq.logger import RunLogger
from dcvq.metrics.evaluator import Evaluator, write_per_image
from dcvq.quantizers.tables import kmeans_init_, restart_unused_
from dcvq.runtime.distributed import (
    DistEnv,
    amp_dtype,
    init_distributed,
    max_over_ranks,
    resolve_device,
)
from dcvq.runtime.lock import run_dir_lock
from dcvq.runtime.stop import Stopped, StopSignals
from dcvq.trainer.collapse import CodebookCollapsed, collapsed, describe, stop_message

log = logging.getLogger(__name__)


# The keys that shape a checkpoint's tensors.
MODEL_KEYS = ("model", "quantizer", "codebook", "loss")
# An evaluation's image metrics (metrics.jsonl, the logger)
METRICS = ("l1", "l2", "psnr", "ssim", "lpips", "fid")


class NonFiniteLossError(RuntimeError):
    pass


def learning_rate(t: DictConfig, world_size: int) -> float:
    if t.lr is not None:
        return float(t.lr)
    return t.base_lr * t.batch_size * t.accumulate * world_size


def lr_factor(t: DictConfig, step: int) -> float:
    """The learning rate of step ``step`` (0-based) over ``trainer.lr``: a function of
    the step alone, so a resumed run follows the schedule exactly with no state."""
    warmup = t.get("warmup_steps", 0)
    if step < warmup:
        return (step + 1) / warmup
    if t.get("lr_schedule", "constant") == "constant":
        return 1.0
    progress = (step - warmup) / max(1, t.max_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def average_gradients(module: torch.nn.Module, world_size: int) -> None:
    for p in module.parameters():
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad /= world_size


def autoencoder_groups(model: nn.Module, t: DictConfig) -> list[dict[str, Any]]:
    """The autoencoder optimiser's parameter groups: one, or two where the codebook's rate
    may differ from the rest (``trainer.codebook_lr_mult``, ``trainer.on_collapse=rollback``):
    the parameters the quantizer declares its codebook's, and the others. Each group's
    ``lr_mult`` scales the step's learning rate; ``codebook`` marks the codebook's."""
    params = list(model.parameters())
    if t.codebook_lr_mult == 1 and t.on_collapse != "rollback":
        return [{"params": params, "lr_mult": 1.0, "codebook": False}]
    codebook = list(model.quantizer.codebook_parameters())
    if not codebook:
        raise ConfigError(
            f"trainer.codebook_lr_mult={t.codebook_lr_mult}, trainer.on_collapse="
            f"{t.on_collapse}: {type(model.quantizer).__name__} declares no codebook "
            "parameters (Quantizer.codebook_parameters)"
        )
    ids = {id(p) for p in codebook}
    return [
        {"params": [p for p in params if id(p) not in ids], "lr_mult": 1.0, "codebook": False},
        {"params": codebook, "lr_mult": float(t.codebook_lr_mult), "codebook": True},
    ]


def psnr_batch(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """PSNR of the batch as a whole (progress bar); the evaluation's is per image."""
    mse = ((x.float() - x_hat.float().clamp(-1, 1)) / 2).pow(2).mean()
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def apply_speed_options(model: nn.Module, loss: nn.Module, t: DictConfig) -> None:
    """``trainer.channels_last`` and ``trainer.compile``, in place: ``Module.compile``
    keeps the parameter names, so checkpoints load into an uncompiled model and back.

    ``trainer.compile=model`` compiles the generator step's networks: the autoencoder
    (its quantizer included: the dual quantizer's forward is one graph) and the loss's
    LPIPS and discriminator (also run by the discriminator step). Left eager: the
    loss's few element-wise terms and the adaptive weight, whose ``torch.autograd.grad``
    calls no graph can hold."""
    if t.channels_last:
        model.to(memory_format=torch.channels_last)
        loss.to(memory_format=torch.channels_last)
    if t.compile == "model":
        # The adaptive weight differentiates the decoder twice (retain_graph=True), which
        # compiled backwards with donated buffers refuse; donation only saves memory.
        if hasattr(torch._functorch.config, "donated_buffer"):
            torch._functorch.config.donated_buffer = False
        for module in (model, loss.perceptual, loss.discriminator):
            if module is not None:  # no LPIPS with loss.perceptual_weight=0
                module.compile()
    elif t.compile == "codebook":
        targets = model.quantizer.compile_targets()
        if not targets:
            raise ValueError(
                "trainer.compile=codebook: this quantizer has no transformer codebook; "
                "use trainer.compile=model or none"
            )
        for target in targets:
            target.compile()


class Trainer:
    def __init__(self, cfg: DictConfig, run_dir: str | Path, logger: RunLogger | None = None):
        validate(cfg)
        self.cfg, self.t = cfg, cfg.trainer
        self.run_dir = Path(run_dir)
        self.ckpt_path = self.run_dir / "checkpoints" / "last.pt"
        self.logger = logger or RunLogger()
        # the backend (nccl/gloo) depends on the device type, the device on the local rank;
        # a group joined by the caller (train.py, for the stages after training) stays
        self.owns_group = not torch.distributed.is_initialized()
        self.dist: DistEnv = init_distributed(
            resolve_device(self.t.device, DistEnv()).type, self.t.dist_timeout_min
        )
        self.device = resolve_device(self.t.device, self.dist)
        self.dtype = amp_dtype(self.t.precision, self.device)

        # Same seed on every rank: identical init and identical dropout masks in the
        # codebook transformer, so every rank quantizes against the same codebook.
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg).to(self.device)
        self.loss = build_loss(cfg).to(self.device)
        apply_speed_options(self.model, self.loss, self.t)
        self.lr = lr = learning_rate(self.t, self.dist.world_size)
        betas = tuple(self.t.betas)
        fused = self.device.type == "cuda"
        groups = autoencoder_groups(self.model, self.t)
        self.opt_ae = torch.optim.Adam(groups, lr=lr, betas=betas, fused=fused)
        # trainer.on_collapse=rollback: the codebook's rate scale and the rollbacks so far
        self.codebook_lr_scale = 1.0
        self.rollbacks: list[dict[str, Any]] = []
        self.healthy_path = self.run_dir / "checkpoints" / "healthy.pt"
        self.opt_d = torch.optim.Adam(
            self.loss.discriminator.parameters(), lr=lr, betas=betas, fused=fused
        )
        # Metric networks load now: a missing weights file fails before the first step.
        # Built (like every evaluation) on rank 0 only, so without touching the global
        # RNG: every rank must keep the same random stream.
        self.evaluator = None
        if self.dist.is_main:
            with self.rng_untouched():
                self.evaluator = Evaluator.from_config(cfg.eval, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.step = 0
        self.ddp_model = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=ids)
            # The discriminator keeps per-rank BatchNorm statistics (as taming under DDP);
            # its gradients are averaged by hand in train_step.
        log.info(
            "lr %.3g, device %s, amp %s, world %d",
            lr,
            self.device,
            self.dtype,
            self.dist.world_size,
        )

    def rng_untouched(self):
        """Work on rank 0 alone (evaluation) must not advance the global RNG that every
        rank shares (a data loader iterator, for one, draws its seed from it)."""
        return torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else [])

    # ---- state -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "discriminator": self.loss.discriminator.state_dict(),
            "opt_ae": self.opt_ae.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(self.device),
            "codebook_lr_scale": self.codebook_lr_scale,
            "rollbacks": self.rollbacks,
            "config": OmegaConf.to_yaml(self.cfg, resolve=True),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.loss.discriminator.load_state_dict(state["discriminator"])
        self.opt_ae.load_state_dict(state["opt_ae"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.codebook_lr_scale = float(state.get("codebook_lr_scale", 1.0))
        self.rollbacks = list(state.get("rollbacks", []))
        set_rng_state(state["rng"], self.device)

    def save(self, path: Path | None = None) -> None:
        if self.dist.is_main:
            save_checkpoint(self.state_dict(), path or self.ckpt_path)

    def maybe_resume(self) -> None:
        if not self.t.resume and self.ckpt_path.is_file():
            log.warning(
                "trainer.resume=false: starting from step 0; the checkpoint %s from an earlier "
                "run is not loaded and will be overwritten at the first save",
                self.ckpt_path,
            )
            return
        if self.t.resume and self.ckpt_path.is_file():
            state = read_checkpoint(self.ckpt_path, map_location=self.device)
            try:
                self.load_state_dict(state)
            except (RuntimeError, KeyError, ValueError) as e:
                changed = config_changes(state.get("config", ""), self.cfg, MODEL_KEYS)
                raise RuntimeError(
                    f"cannot resume from {self.ckpt_path}: it was written with another "
                    f"configuration ({', '.join(changed) or 'see the error below'}). Train this "
                    "configuration in a new run directory (hydra.run.dir=...); the "
                    f"checkpoint is left as it is.\n{e}"
                ) from e
            log.info("resumed from %s at step %d", self.ckpt_path, self.step)
            saved = OmegaConf.to_container(OmegaConf.create(state.get("config") or "{}"))
            changed = result_changes(saved, self.cfg, also_neutral=("trainer.max_steps",))
            if changed:
                log.warning("resumed with settings that differ: %s", "; ".join(changed))

    # ---- data --------------------------------------------------------------------
    def loaders(self) -> tuple[DataLoader, DataLoader]:
        val_ds = build_dataset(self.cfg, self.cfg.dataset.split, training=False)
        workers = resolve_num_workers(self.t.num_workers)
        val = build_eval_loader(val_ds, self.t.eval_batch_size, workers, self.device)
        return self.train_loader(), val

    def train_loader(self) -> DataLoader:
        """The training batches from the current step on (the same data order and crops
        as an uninterrupted run: :class:`~dcvq.data.StepSampler`)."""
        cfg, t = self.cfg, self.t
        train_ds = build_dataset(cfg, cfg.dataset.train_split, training=True)
        sampler = StepSampler(
            len(train_ds),
            t.batch_size,
            cfg.seed,
            start_step=self.step * t.accumulate,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        workers = resolve_num_workers(t.num_workers)
        # An explicit generator: creating a loader iterator must not draw from the global
        # RNG, or resuming would shift the dropout masks.
        return SignalSafeLoader(  # workers leave Slurm's signals to this process
            train_ds,
            batch_size=t.batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(cfg.seed),
        )

    # ---- steps -------------------------------------------------------------------
    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def set_quantizer_step(self) -> None:
        self.model.quantizer.set_step(self.step)

    def train_step(self, micro_batches: list[torch.Tensor]) -> dict[str, float]:
        """One optimizer step over ``accumulate`` micro-batches."""
        self.model.train()
        self.loss.train()
        self.set_quantizer_step()
        disc_on = self.loss.disc_active(self.step)
        n = len(micro_batches)
        sums: dict[str, torch.Tensor] = {}  # on the device: one host sync per step
        counts: dict[str, torch.Tensor] = {}
        last_layer = self.model.decoder.last_layer
        grad_scale = self.scaler.scale if self.scaler.is_enabled() else None
        for i, x in enumerate(micro_batches):
            x = x.to(self.device, non_blocking=True)
            if self.t.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            # DDP all-reduces the gradients once, in the last micro-batch's backward
            no_sync = self.dist.enabled and i < n - 1
            with self.ddp_model.no_sync() if no_sync else nullcontext():
                self.loss.discriminator.requires_grad_(False)
                with self.autocast():
                    x_hat, vq_loss, info = self.ddp_model(x)
                    g_loss, logs = self.loss.generator_loss(
                        x, x_hat, vq_loss, self.step, last_layer, grad_scale
                    )
                self.scaler.scale(g_loss / n).backward()
            if disc_on:
                self.loss.discriminator.requires_grad_(True)
                with self.autocast():
                    d_loss, d_logs = self.loss.discriminator_loss(x, x_hat.detach(), self.step)
                self.scaler.scale(d_loss / n).backward()
                logs |= d_logs
            logs["psnr"] = psnr_batch(x, x_hat.detach())
            logs |= {f"vq_{name}": v for name, v in info["losses"].items()}
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float() / n
            for name, c in info["counts"].items():
                counts[name] = counts.get(name, 0) + c
            latent = info["latent"]
        for name, c in counts.items():
            sums[f"batch_usage_{name}"] = (c > 0).float().mean()
        stacked = torch.stack(list(sums.values()))
        bad = stacked.isfinite().all().logical_not().float().reshape(1)
        if self.dist.enabled:
            # Every rank stops together: DDP has already averaged the NaN gradients into
            # the others, which must not step (nor wait for a rank that left).
            torch.distributed.all_reduce(bad)
        values = dict(zip(sums, stacked.tolist(), strict=True))
        if bad.item() > 0:
            where = "" if not all(map(math.isfinite, values.values())) else " on another rank"
            raise NonFiniteLossError(
                f"non-finite loss at step {self.step}{where}: "
                + ", ".join(f"{k}={v:.4g}" for k, v in values.items())
                + f". The last good checkpoint {self.ckpt_path} is intact (nothing was saved "
                "after this step). Lower trainer.lr/base_lr or use trainer.precision=fp32."
            )
        lr = self.lr * lr_factor(self.t, self.step)
        for group in self.opt_ae.param_groups:
            group["lr"] = lr * group["lr_mult"]
            if group["codebook"]:
                group["lr"] *= self.codebook_lr_scale
                values["lr_codebook"] = group["lr"]
        for group in self.opt_d.param_groups:
            group["lr"] = lr
        values["lr"] = lr
        self.scaler.step(self.opt_ae)
        if disc_on:
            if self.dist.enabled:
                average_gradients(self.loss.discriminator, self.dist.world_size)
            self.scaler.step(self.opt_d)
        self.scaler.update()
        self.opt_ae.zero_grad(set_to_none=True)
        self.opt_d.zero_grad(set_to_none=True)
        if getattr(self.model.quantizer, "restart_unused_after", 0):
            values |= self.restart_unused(counts, latent)
        self.step += 1
        return values

    # ---- data-dependent code tables (dcvq.quantizers.tables) ---------------------------
    def table_generator(self) -> torch.Generator:
        """The same draws on every rank and on resume: seeded by the run's seed and step."""
        return torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step)

    def gathered(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` of every rank, concatenated along the batch in rank order."""
        if not self.dist.enabled:
            return z
        parts = [torch.empty_like(z) for _ in range(self.dist.world_size)]
        torch.distributed.all_gather(parts, z.contiguous())
        return torch.cat(parts)

    def broadcast(self, tensors) -> None:
        """Rank 0's values everywhere, bit for bit."""
        if self.dist.enabled:
            for t in tensors:
                torch.distributed.broadcast(t.data, 0)

    def kmeans_init(self, micro_batches: list[torch.Tensor]) -> None:
        """``quantizer.kmeans_init``: before the first step, the code tables from the
        encoder latents of the first step's batches (every rank's)."""
        q = self.model.quantizer
        with torch.no_grad():
            z = torch.cat([self.model.latent(x.to(self.device)) for x in micro_batches])
        z = self.gathered(z)
        kmeans_init_(q, z, self.table_generator())
        self.broadcast(q.init_tables().values())
        log.info(
            "quantizer.kmeans_init: %s from %d latent rows", ", ".join(q.init_tables()),
            z.shape[0] * z.shape[2] * z.shape[3],
        )  # fmt: skip

    def restart_unused(self, counts: dict[str, torch.Tensor], latent: torch.Tensor):
        """``quantizer.restart_unused_after``: after the optimizer step, with the step's
        code counts over every rank and the last micro-batch's latents of every rank."""
        q = self.model.quantizer
        if self.dist.enabled:
            counts = {name: c.clone() for name, c in counts.items()}
            for c in counts.values():
                torch.distributed.all_reduce(c)
        restarted = restart_unused_(q, self.gathered(latent), counts, self.table_generator())
        if any(restarted.values()):
            self.broadcast(q.code_tables().values())
        return {f"restarted_{name}": float(n) for name, n in restarted.items()}

    # ---- evaluation ----------------------------------------------------------------
    def test_loader(self) -> DataLoader | None:
        """The ``dataset.test_split`` the final evaluation also scores (None: no test split).
        Settings are chosen on ``dataset.split`` (val); verdicts are judged on this one."""
        split = self.cfg.dataset.get("test_split")
        if split is None:
            return None
        dataset = build_dataset(self.cfg, split, training=False)
        workers = resolve_num_workers(self.t.num_workers)
        return build_eval_loader(dataset, self.t.eval_batch_size, workers, self.device)

    def evaluate_split(self, loader: DataLoader, split: str, final: bool) -> dict[str, Any]:
        """Evaluate one split of the run's data with the model as trained so far; the final
        evaluation scores every image (``eval.max_images``) and keeps them image by image
        (``per_image``), the periodic ones a subset."""
        e = self.cfg.eval
        save = e.save_reconstructions and final and split == self.cfg.dataset.split
        max_images = (
            e.max_images
            if final or e.max_images_during_training is None
            else e.max_images_during_training
        )
        results = self.evaluator(
            self.model,
            loader,
            max_images=max_images,
            reconstructions_dir=self.run_dir / "reconstructions" if save else None,
            split=split,
            per_image=final,
        )
        return results | {"data": dataset_info(loader.dataset)}

    def evaluate_final(self, val: DataLoader, test: DataLoader | None) -> dict[str, Any]:
        """The val split's results, with the test split's under ``test``; both splits'
        images in ``per_image.csv`` (its ``split`` column), written before eval.json,
        which marks the run finished."""
        results = self.evaluate_split(val, self.cfg.dataset.split, final=True)
        parts = [(self.cfg.dataset.split, results.pop("per_image"))]
        if test is not None:
            results["test"] = self.evaluate_split(test, self.cfg.dataset.test_split, final=True)
            parts.append((self.cfg.dataset.test_split, results["test"].pop("per_image")))
        write_per_image(self.run_dir / "per_image.csv", parts)
        return results

    def grid_images(self, dataset) -> torch.Tensor:
        """Images spread evenly over the evaluation split (not just its first files)."""
        n = min(self.t.grid_images, len(dataset))
        picks = torch.linspace(0, len(dataset) - 1, n).round().long().unique().tolist()
        images = [x for x, _ in (dataset[i] for i in picks) if x is not None]
        if not images:
            raise RuntimeError(f"no readable image in the evaluation split ({len(dataset)})")
        return torch.stack(images)

    @torch.no_grad()
    def save_grid(self, x: torch.Tensor) -> Path:
        was_training = self.model.training
        self.model.eval()
        x = x.to(self.device)
        x_hat, _, _ = self.model(x)
        self.model.train(was_training)
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        return save_reconstruction_grid(x, x_hat, path)

    def run_eval(
        self,
        val: DataLoader,
        grid_batch: torch.Tensor,
        test: DataLoader | None = None,
        final: bool = False,
    ) -> dict[str, Any] | None:
        """Evaluate on rank 0 (the others wait), record the results; {} on other ranks,
        None on rank 0 when a signal interrupted the evaluation (nothing recorded)."""
        results: dict[str, Any] | None = {}
        if self.dist.is_main:
            with self.rng_untouched():
                try:
                    if final:
                        results = self.evaluate_final(val, test)
                    else:
                        results = self.evaluate_split(val, self.cfg.dataset.split, final=False)
                except Stopped as e:
                    log.warning("evaluation at step %d stopped, not recorded: %s", self.step, e)
                    results = None
                else:
                    self.record_eval(results, grid_batch)
        if self.dist.enabled:
            torch.distributed.barrier()
        return results

    def record_eval(self, results: dict[str, Any], grid_batch: torch.Tensor) -> None:
        summary = {"step": self.step} | {k: results.get(k) for k in METRICS}
        summary["codebooks"] = {
            name: {k: v for k, v in cb.items() if k != "counts"}
            for name, cb in results["codebooks"].items()
        }
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(summary) + "\n")
        flat = {f"val/{k}": v for k, v in summary.items() if isinstance(v, float)}
        test = results.get("test") or {}
        flat |= {f"test/{k}": test[k] for k in METRICS if isinstance(test.get(k), float)}
        for name, cb in summary["codebooks"].items():
            if cb.get("distinct", cb["used"]) < cb["used"] / 2:
                log.warning(
                    "step %d: codebook %r has collapsed: its %d used codes are %d distinct "
                    "vectors (usage counts indices, not vectors)",
                    self.step, name, cb["used"], cb["distinct"],
                )  # fmt: skip
            flat |= {f"val/{name}/{k}": float(v) for k, v in cb.items() if k != "size"}
        self.logger.log_metrics(flat, self.step)
        self.logger.log_usage(
            {n: torch.tensor(cb["counts"]) for n, cb in results["codebooks"].items()}, self.step
        )
        self.logger.log_image("val/reconstructions", self.save_grid(grid_batch), self.step)

    # ---- main loop -------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to ``trainer.max_steps`` (resuming if asked); returns the final evaluation.
        Rank 0 holds the run dir for the whole run (:mod:`dcvq.runtime.lock`)."""
        with run_dir_lock(self.run_dir) if self.dist.is_main else nullcontext():
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        self.maybe_resume()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            self.logger.start(
                OmegaConf.to_container(self.cfg, resolve=True), self.run_dir, self.step
            )
            self.logger.set_discarded_steps(self.discarded_steps())  # a resumed run's
        train, val = self.loaders()
        grid_batch = self.grid_images(val.dataset)
        bar = tqdm(
            total=self.t.max_steps,
            initial=self.step,
            disable=not (self.t.progress and self.dist.is_main),
            dynamic_ncols=True,
            desc="train",
        )
        # From before the loader workers start to the end; what a stop signal does at each
        # point is in this module's docstring.
        with StopSignals(
            env=self.dist, device=self.device, action="checkpointing at the end of this step"
        ) as stop:
            val = stop.batches(val)
            if self.t.on_collapse == "rollback" and not self.healthy_path.is_file():
                self.save(self.healthy_path)  # before any evaluation: the state to go back to
            batches = iter(train)
            try:
                self._loop(batches, val, grid_batch, bar, stop)
                test = self.test_loader() if self.dist.is_main else None
                if test is not None:
                    test = stop.batches(test)
                return self.final_eval(val, test, grid_batch, stop)
            finally:
                bar.close()
                if self.dist.is_main:
                    self.logger.finish()
                if self.owns_group and self.dist.enabled and torch.distributed.is_initialized():
                    torch.distributed.destroy_process_group()

    def final_eval(self, val, test, grid_batch: torch.Tensor, stop: StopSignals) -> dict[str, Any]:
        """The final evaluation (val, and test where the dataset has one) into eval.json. A
        signal interrupts it and is handed on (the loop wrote the last step's
        checkpoint); if the run goes on, it starts again."""
        while True:
            results = self.run_eval(val, grid_batch, test, final=True)
            if not max_over_ranks(int(results is None), self.dist, self.device):
                break
            log.warning("final evaluation interrupted; the checkpoint is at step %d", self.step)
            stop.stop_here()  # exits unless the previous handler lets the run go on: again
        if self.dist.is_main:
            # The config it belongs to: a re-launched sweep skips this run only if unchanged.
            results["step"] = self.step
            # where it ran (trainer.device may say auto): the report keeps devices apart
            results["device"] = str(self.device)
            results["collapsed"] = collapsed(results["codebooks"])
            results["rollbacks"] = self.rollbacks
            results["codebook_lr_scale"] = self.codebook_lr_scale
            results["config"] = OmegaConf.to_container(self.cfg, resolve=True)
            write_text_atomic(self.run_dir / "eval.json", json.dumps(results, indent=1))
        if self.dist.enabled:  # every rank returns with the run finished on disk
            torch.distributed.barrier()
        if stop.requested:
            log.warning(
                "%s received as the final evaluation ended: the run is complete, ending normally",
                signal.Signals(stop.signum).name,
            )
        return results

    def _loop(self, batches, val, grid_batch, bar, stop: StopSignals) -> None:
        while self.step < self.t.max_steps:
            micro = [self.next_images(batches) for _ in range(self.t.accumulate)]
            if self.step == 0 and getattr(self.model.quantizer, "kmeans_init", False):
                self.kmeans_init(micro)  # a fresh run (or one rolled back to its start)
            logs = self.train_step(micro)
            bar.update(1)
            if self.step % self.t.log_every == 0 or self.step == 1:
                self.record_train(logs, bar)
            saved = self.step % self.t.ckpt_every == 0 or self.step == self.t.max_steps
            if saved:
                self.save()
            if self.step % self.t.eval_every == 0 and self.step < self.t.max_steps:
                results = self.run_eval(val, grid_batch)
                if self.after_collapse_check(results, saved):  # rolled back
                    batches = iter(self.train_loader())
                    bar.n = self.step
                    bar.refresh()
                    saved = True  # the rollback wrote last.pt
            stop.stop_here(partial(self.save_after_signal, saved))

    def after_collapse_check(self, results: dict[str, Any] | None, saved: bool) -> bool:
        """``trainer.on_collapse`` after a periodic evaluation (:mod:`dcvq.trainer.collapse`):
        every rank acts on rank 0's results. True when training went back to the last
        healthy checkpoint (the caller restarts its batches at the restored step)."""
        names = collapsed(results["codebooks"]) if results else []
        if not max_over_ranks(int(bool(names)), self.dist, self.device):
            if self.t.on_collapse == "rollback" and results is not None:
                self.save(self.healthy_path)  # rank 0; an interrupted evaluation proves nothing
            return False
        action = self.t.on_collapse
        if action == "warn":
            return False  # record_eval logged it
        what = describe(results["codebooks"], names) if results else "(on rank 0)"
        if action == "rollback" and len(self.rollbacks) < self.t.max_rollbacks:
            self.rollback(what)
            return True
        if not saved:
            self.save()
        reason = (
            f"rolled back {len(self.rollbacks)} times already (trainer.max_rollbacks)"
            if action == "rollback"
            else "trainer.on_collapse=stop"
        )
        raise CodebookCollapsed(stop_message(self.step, what, str(self.ckpt_path), reason))

    def discarded_steps(self) -> int:
        """The steps trained and then discarded by the rollbacks so far."""
        return sum(r["at_step"] - r["to_step"] for r in self.rollbacks)

    def rollback(self, what: str) -> None:
        """Back to ``checkpoints/healthy.pt`` with the codebook's rate times
        ``trainer.collapse_lr_factor``; the new state is written to last.pt at once."""
        if self.dist.enabled:
            torch.distributed.barrier()  # rank 0 has written healthy.pt
        at, scale = self.step, self.codebook_lr_scale * self.t.collapse_lr_factor
        rollbacks = self.rollbacks
        self.load_state_dict(read_checkpoint(self.healthy_path, map_location=self.device))
        self.codebook_lr_scale = scale
        self.rollbacks = [
            *rollbacks,
            {"at_step": at, "to_step": self.step, "codebooks": what, "codebook_lr_scale": scale},
        ]
        if self.dist.is_main:
            self.logger.set_discarded_steps(self.discarded_steps())
        log.warning(
            "step %d: codebook %s collapsed; rolled back to step %d (the last healthy "
            "evaluation) with the codebook's learning rate times %.3g (rollback %d of at most %d)",
            at, what, self.step, scale, len(self.rollbacks), self.t.max_rollbacks,
        )  # fmt: skip
        self.save()

    def save_after_signal(self, saved: bool) -> None:
        """The checkpoint of the step a signal ended: written unless the step wrote it
        (the signal may have come during that write)."""
        if not saved:
            self.save()
        if self.dist.is_main:  # the one rank that writes it
            log.warning("checkpoint written at step %d after a signal", self.step)

    def next_images(self, batches) -> torch.Tensor:
        """The next training batch; unreadable files are named in the log (the batch is
        smaller by as many), and a batch of nothing but unreadable files stops the run."""
        batch = next(batches)
        if batch.skipped:
            log.warning(
                "step %d: %d unreadable training image(s) left out: %s",
                self.step, len(batch.skipped), ", ".join(batch.skipped[:10]),
            )  # fmt: skip
        if len(batch.images) == 0:
            raise RuntimeError(
                f"step {self.step}: no image of a training batch could be read "
                f"({', '.join(batch.skipped[:10])}); fix or remove these files under "
                f"dataset.root={self.cfg.dataset.get('root')}"
            )
        return batch.images

    def record_train(self, logs: dict[str, float], bar: tqdm) -> None:
        usage = [v for k, v in logs.items() if k.startswith("batch_usage_")]
        bar.set_postfix(
            loss=f"{logs['total']:.3f}",
            psnr=f"{logs['psnr']:.2f}",
            usage=f"{sum(usage) / max(len(usage), 1):.0%}",
        )
        if self.dist.is_main:
            self.logger.log_metrics({f"train/{k}": v for k, v in logs.items()}, self.step)
            with open(self.run_dir / "train.jsonl", "a") as f:
                f.write(json.dumps({"step": self.step} | logs) + "\n")


def finished_results(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any] | None:
    """The run's eval.json if it finished with this very config (but for keys that do
    not change results), else None: it is then trained, resumed or re-run."""
    path = Path(run_dir) / "eval.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    saved = results.get("config") if isinstance(results, dict) else None
    if not isinstance(saved, dict):
        log.info("%s has no config (written by an older dcvq): training again", path)
        return None
    changed = result_changes(saved, cfg)
    if changed:
        log.info("%s is from another config (%s): training again", path, "; ".join(changed))
        return None
    return results


def train(cfg: DictConfig, run_dir: str | Path, logger: RunLogger | None = None) -> dict:
    """Train ``cfg`` into ``run_dir`` and return the final evaluation (eval.json). A run
    that finished with this config is not trained again (a re-launched sweep trains only
    what is unfinished or missing); a checkpoint is resumed (``trainer.resume``)."""
    finished = finished_results(cfg, run_dir)
    if finished is not None:
        log.info(
            "%s finished at step %s with this config: nothing to train (eval.json kept)",
            run_dir, finished.get("step"),
        )  # fmt: skip
        return finished
    return Trainer(cfg, run_dir, logger).fit()
