"""Data-loader workers leave the preemption signals to the main process.

Slurm delivers a job's signal (``--signal=USR2@N``, ``scancel --signal=USR2``, SIGTERM on
preemption) to every process of the job step, the data-loader workers included. A
worker keeps the default action of USR2 (terminate), and PyTorch's own SIGTERM handler
in a worker terminates it too unless the main process sent it; the main process then
fails with "DataLoader worker (pid ...) exited unexpectedly" instead of writing its
checkpoint (:mod:`dcvq.runtime.stop`). So every loader dcvq builds is a
:class:`SignalSafeLoader`:

- its workers ignore the preemption signals (``worker_init_fn``, run before any other
  worker_init_fn given): the main process alone decides, and stops them as usual. USR2
  is simply ignored. SIGTERM stays blocked in the worker and a thread takes it with
  ``sigwaitinfo``: sent by the main process, it ends the worker as PyTorch's own handler
  does (PyTorch and multiprocessing end leftover workers at exit with SIGTERM: a worker
  deaf to it would hang the exit), from anyone else (Slurm) it is ignored;
- its workers start with these signals blocked (the main thread blocks them while the
  loader forks): a signal that reaches a worker before its ``worker_init_fn`` ran stays
  pending and is then ignored, instead of killing it. The main process receives its own
  signals once the workers are started.

A process that a worker starts inherits the blocked SIGTERM (masks survive exec).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch.utils.data import DataLoader


def preemption_signals() -> list[signal.Signals]:
    """The signals Slurm and submitit use to stop a job early, the requeue signal first.

    submitit's preemption signal is USR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    usr = getattr(signal, f"SIG{name}", signal.SIGUSR2)
    return [usr, signal.SIGTERM] if usr != signal.SIGTERM else [usr]


@contextmanager
def preemption_signals_blocked() -> Iterator[None]:
    """Blocks the preemption signals in the calling thread; on exit, the previous mask is
    restored and a signal that arrived meanwhile is delivered then (not lost)."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no masks, no Slurm
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, preemption_signals())
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _sigterm_from_main_only(main_pids: set[int]) -> None:
    while True:
        info = signal.sigwaitinfo({signal.SIGTERM})
        if info.si_pid in main_pids:
            os._exit(0)  # what PyTorch's worker handler does on its parent's SIGTERM


def ignore_preemption_signals(worker_id: int, then: Callable[[int], Any] | None = None) -> None:
    """The workers' ``worker_init_fn``: ignore the preemption signals (SIGTERM except from
    the main process), then run ``then``."""
    signals = preemption_signals()
    for sig in signals:
        if sig != signal.SIGTERM:
            # Also discards a signal pending since the fork (blocked, see SignalSafeLoader).
            signal.signal(sig, signal.SIG_IGN)
    waited = [signal.SIGTERM] if signal.SIGTERM in signals else []
    if not hasattr(signal, "sigwaitinfo"):  # macOS (no Slurm): PyTorch's handler decides
        waited = []
    if waited:
        # Blocked in every thread of the worker (threads inherit the mask): only
        # sigwaitinfo receives it. The main process: the parent, unless a fork server
        # started the worker.
        signal.pthread_sigmask(signal.SIG_BLOCK, waited)
        parent = multiprocessing.parent_process()
        main_pids = {os.getppid(), *([parent.pid] if parent is not None else [])}
        threading.Thread(
            target=_sigterm_from_main_only, args=(main_pids,), name="dcvq-sigterm", daemon=True
        ).start()
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig for sig in signals if sig not in waited])
    if then is not None:
        then(worker_id)


class SignalSafeLoader(DataLoader):
    """A ``DataLoader`` whose worker processes ignore the preemption signals (above)."""

    def __init__(self, *args: Any, worker_init_fn: Callable[[int], Any] | None = None, **kwargs):
        # functools.partial of a module-level function: picklable for spawned workers
        init = functools.partial(ignore_preemption_signals, then=worker_init_fn)
        super().__init__(*args, worker_init_fn=init, **kwargs)

    def __iter__(self):
        if self.num_workers == 0:
            return super().__iter__()
        # Workers are forked here (and, if persistent, only on the first call).
        with preemption_signals_blocked():
            return super().__iter__()
