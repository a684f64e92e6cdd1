"""Where a process computes: its place in the process group (joined from the environment:
torchrun, or submitit's exported env), its device and the precision it computes in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from dcvq.config.schema import precision_on


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def export_submitit_env() -> None:
    """Inside a submitit job with several tasks (one per GPU), export RANK, WORLD_SIZE,
    MASTER_ADDR/PORT... for ``env://``, as torchrun would."""
    if "SUBMITIT_EXECUTOR" not in os.environ or "WORLD_SIZE" in os.environ:
        return
    from submitit.helpers import TorchDistributedEnvironment

    env = TorchDistributedEnvironment()
    if env.world_size > 1:
        # keep every GPU visible: the device is cuda:LOCAL_RANK
        env.export(set_cuda_visible_devices=False)


def init_distributed(device_type: str, timeout_min: float = 120) -> DistEnv:
    """Join the process group when launched with WORLD_SIZE > 1 (``env://``): torchrun,
    or a submitit job with ``tasks_per_node > 1``. ``timeout_min`` bounds every
    collective wait: the other ranks wait in a barrier while rank 0 evaluates a whole
    split, which takes longer than NCCL's 10-minute default on large splits."""
    export_submitit_env()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    env = DistEnv(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(
            backend=backend, init_method="env://", timeout=timedelta(minutes=timeout_min)
        )
    return env


@contextmanager
def process_group(
    device: str | torch.device, timeout_min: float = 120, key: str = "device"
) -> Iterator[DistEnv]:
    """Joins the process group for the block (as :func:`init_distributed`) and leaves it
    at the end, unless it was joined already; ``key`` names the device in errors. Stages
    that follow each other (training, then the prior) share one group: a second
    ``init_process_group`` on torchrun's store can read the first group's stale
    addresses and fail ("Connection reset by peer")."""
    created = not (dist.is_available() and dist.is_initialized())
    if isinstance(device, str):
        device = resolve_device(device, DistEnv(), key)
    env = init_distributed(device.type, timeout_min)
    try:
        yield env
    finally:
        if created and env.enabled and dist.is_initialized():
            dist.destroy_process_group()


def max_over_ranks(value: int, env: DistEnv, device: torch.device) -> int:
    """The largest ``value`` of all ranks: a collective, which every rank calls at the same
    point; ``value`` itself without a process group. ``device``: this rank's (NCCL
    reduces CUDA tensors only)."""
    if not env.enabled:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def resolve_device(name: str, env: DistEnv, key: str = "trainer.device") -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` (under DDP: ``cuda:LOCAL_RANK``) | ``cuda:N``; ``key``
    is the config key named in errors."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{key}={name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and device.index is not None and env.enabled:
        raise ValueError(
            f"{key}={name} with {env.world_size} processes would put every rank on one GPU; "
            f"use {key}=cuda (rank r takes cuda:LOCAL_RANK)"
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{key}={name} but no CUDA device is visible; use {key}=cpu")
    if name == "cuda":
        return torch.device("cuda", env.local_rank)
    return device


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a ``precision`` setting on ``device`` (None: fp32, no
    autocast); ``auto`` is bf16 on CUDA, fp32 elsewhere."""
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    return dtypes[precision_on(precision, device.type)]
