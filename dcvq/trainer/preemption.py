"""Checkpoint on Slurm's preemption/timeout signals, at a step boundary.

A signal handler only records the signal. The loop checks at the end of each step,
writes a checkpoint of a consistent state and then hands the signal on to whoever
handled it before: submitit's handler requeues the job on USR2 (the requeued job
resumes from the checkpoint in the same run dir) and ignores SIGTERM. Without such a
handler (a plain process, torchrun) the run exits with status 128 + signal.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)


def preemption_signals() -> list[signal.Signals]:
    # submitit's preemption signal is USR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    usr = getattr(signal, f"SIG{name}", signal.SIGUSR2)
    return [usr, signal.SIGTERM] if usr != signal.SIGTERM else [usr]


class PreemptionGuard:
    """``with PreemptionGuard() as guard: ... if guard.requested: guard.hand_on()``."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.frame: FrameType | None = None
        self._previous: dict[int, Callable | int | None] = {}

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in preemption_signals():
                self._previous[sig] = signal.signal(sig, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _record(self, signum: int, frame: FrameType | None) -> None:
        log.warning(
            "received %s: checkpointing at the end of this step", signal.Signals(signum).name
        )
        self.signum, self.frame = signum, frame

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def hand_on(self) -> None:
        """Call the previous handler (may requeue and exit), else exit 128 + signal."""
        signum, frame = self.signum, self.frame
        self.signum = self.frame = None
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)
            return  # e.g. submitit ignores SIGTERM: training goes on
        raise SystemExit(128 + signum)
