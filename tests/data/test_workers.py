"""Data-loader workers leave Slurm's preemption signals to the main process, and still end
when the main process ends them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from torch.utils.data import Dataset

from dcvq.build import build_eval_loader
from dcvq.data.workers import SignalSafeLoader

REPO = Path(__file__).resolve().parents[2]
_INIT: int | None = None  # set in each worker by its worker_init_fn


def mark_worker(worker_id: int) -> None:
    global _INIT
    _INIT = 100 + worker_id


class SlowPids(Dataset):
    """Item i -> (i, pid of the worker, what the user's worker_init_fn set)."""

    def __len__(self) -> int:
        return 48

    def __getitem__(self, i: int) -> tuple[int, int, int | None]:
        time.sleep(0.01)
        return i, os.getpid(), _INIT


def kill_from_outside(sig: signal.Signals, *pids: int) -> None:
    """As Slurm does: from another process (a worker ends on its own parent's SIGTERM)."""
    subprocess.run(["kill", "-s", sig.name.removeprefix("SIG"), *map(str, pids)], check=True)


@pytest.mark.parametrize("persistent", [True, False])
def test_workers_ignore_usr2_and_sigterm_from_outside(persistent):
    loader = SignalSafeLoader(
        SlowPids(),
        batch_size=4,
        num_workers=2,
        persistent_workers=persistent,
        worker_init_fn=mark_worker,
        collate_fn=list,
    )
    for _ in range(2):  # persistent workers serve the second epoch too
        it = iter(loader)
        first = next(it)
        workers = {pid for _, pid, _ in first}
        workers |= {pid for _, pid, _ in next(it)}
        assert len(workers) == 2 and os.getpid() not in workers
        kill_from_outside(signal.SIGUSR2, *workers)
        kill_from_outside(signal.SIGTERM, *workers)
        rest = [item for batch in it for item in batch]  # a dead worker raises here
        items = [*first, *rest]
        assert len(rest) == 48 - 8
        # the user's worker_init_fn ran after dcvq's, in every worker
        assert {init for _, _, init in items} == {100, 101}


def test_eval_loader_is_signal_safe():
    loader = build_eval_loader(SlowPids(), 4, 2, device=__import__("torch").device("cpu"))
    assert isinstance(loader, SignalSafeLoader)


EXIT_SCRIPT = """
import sys
from torch.utils.data import Dataset
from dcvq.data.workers import SignalSafeLoader

class Items(Dataset):
    def __len__(self):
        return 100
    def __getitem__(self, i):
        return i

def main():
    loader = SignalSafeLoader(Items(), batch_size=2, num_workers=2, persistent_workers=True)
    batches = iter(loader)
    next(batches)
    raise SystemExit(3)

try:
    main()
except SystemExit as e:
    # Kept (as frameworks may keep the last exception): its traceback keeps `batches`
    # alive into the interpreter's exit, where PyTorch leaves the cleanup to
    # multiprocessing, which ends the daemonic workers with SIGTERM and joins them.
    KEPT = e
    raise
"""


def test_main_process_still_ends_its_workers_with_sigterm(tmp_path):
    """Workers deaf to every SIGTERM would hang this exit (multiprocessing joins them)."""
    script = tmp_path / "exit.py"
    script.write_text(EXIT_SCRIPT)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert time.monotonic() - t0 < 30
