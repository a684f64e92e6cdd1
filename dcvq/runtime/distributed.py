"""Where a process computes: its place in the process group (joined from the environment:
torchrun, or submitit's exported env), its device and the precision it computes in."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from dcvq.config.schema import precision_on
from dcvq.errors import UserError

log = logging.getLogger(__name__)


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


class RendezvousError(UserError):
    """The ranks of a job cannot find each other; the message names the setting to fix."""


def export_submitit_env() -> None:
    """Inside a submitit job with several tasks (one per GPU, on one node or several),
    export what ``env://`` reads, as torchrun would. From submitit's view of Slurm's
    variables: MASTER_ADDR is the first node of the job's node list
    (``SLURM_JOB_NODELIST``), MASTER_PORT a port in 20000-60000 drawn from the job id
    (the same on every node and after a requeue; a MASTER_PORT already set wins). The
    global rank is node rank x tasks per node + local rank (``SLURM_NODEID``,
    ``SLURM_LOCALID``): rank 0 runs on the MASTER_ADDR node, where the store must be,
    whatever task distribution srun used."""
    if "SUBMITIT_EXECUTOR" not in os.environ or "WORLD_SIZE" in os.environ:
        return
    from submitit import JobEnvironment
    from submitit.helpers import TorchDistributedEnvironment

    env = TorchDistributedEnvironment()
    if env.world_size <= 1:
        return
    job = JobEnvironment()
    if env.world_size != job.num_nodes * env.local_world_size:
        raise RendezvousError(
            f"{env.world_size} tasks on {job.num_nodes} nodes: DDP needs the same number on "
            "every node; set hydra.launcher.tasks_per_node instead of a total task count"
        )
    rank = job.node * env.local_world_size + env.local_rank
    if job.num_nodes > 1:
        _check_resolves(env.master_addr, "MASTER_ADDR (the first node of SLURM_JOB_NODELIST)")
    os.environ.update(
        MASTER_ADDR=env.master_addr,
        MASTER_PORT=str(env.master_port),
        RANK=str(rank),
        WORLD_SIZE=str(env.world_size),
        LOCAL_RANK=str(env.local_rank),  # the device is cuda:LOCAL_RANK: every GPU stays visible
        LOCAL_WORLD_SIZE=str(env.local_world_size),
    )
    log.info(
        "rank %d of %d: node %d of %d (%s), local rank %d of %d; rendezvous %s:%d",
        rank, env.world_size, job.node, job.num_nodes, socket.gethostname(),
        env.local_rank, env.local_world_size, env.master_addr, env.master_port,
    )  # fmt: skip


def _check_resolves(host: str, what: str) -> None:
    try:
        socket.getaddrinfo(host, None)
    except OSError as e:
        raise RendezvousError(
            f"{what} {host!r} does not resolve on {socket.gethostname()} ({e}): every node "
            "of a job must resolve the Slurm node names of the others (DNS or /etc/hosts; "
            "ask the cluster's admins)"
        ) from None


def gloo_interface_error() -> str | None:
    """Why gloo cannot reach the other nodes from here, or None. Gloo offers the other
    ranks the address this host's name resolves to (or the loopback address when it does
    not resolve): a hostname mapped to 127.0.1.1 in /etc/hosts, as on many machines,
    leaves every rank of another node connecting to itself until the timeout.
    ``GLOO_SOCKET_IFNAME`` names the interface instead."""
    if os.environ.get("GLOO_SOCKET_IFNAME"):
        return None
    host = socket.gethostname()
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
    except OSError:
        addrs = set()
    if addrs and not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs):
        return None
    found = ", ".join(sorted(addrs)) or "nothing"
    return (
        f"this host's name {host!r} resolves to {found}, so gloo (trainer.device=cpu) would "
        "offer the other nodes a loopback address and wait for them until "
        "trainer.dist_timeout_min; set GLOO_SOCKET_IFNAME to the interface that connects "
        "the nodes (see `ip -br addr`, e.g. export GLOO_SOCKET_IFNAME=eth0 before "
        "submitting) or map the hostname to that interface's address"
    )


def init_distributed(device_type: str, timeout_min: float = 120) -> DistEnv:
    """Join the process group when launched with WORLD_SIZE > 1 (``env://``): torchrun,
    or a submitit job with ``tasks_per_node > 1`` or ``nodes > 1``. ``timeout_min``
    bounds every collective wait: the other ranks wait in a barrier while rank 0
    evaluates a whole split, which takes longer than NCCL's 10-minute default on large
    splits."""
    export_submitit_env()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    env = DistEnv(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        # several nodes (torchrun and submitit export LOCAL_WORLD_SIZE): gloo's address
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        if backend == "gloo" and local_world < world and (error := gloo_interface_error()):
            raise RendezvousError(error)
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
