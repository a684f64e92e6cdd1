"""Checkpoint on Slurm's preemption/timeout signals, at a step boundary.

A signal handler only records the signal. The loop checks at the end of each step,
writes a checkpoint of a consistent state and then hands the signal on to whoever
handled it before: submitit's handler requeues the job on USR2 (the requeued job
resumes from the checkpoint in the same run dir) and ignores SIGTERM. Without such a
handler (a plain process, torchrun) the run exits with status 128 + signal.

Where a signal can arrive, and what happens (``Trainer.fit``):

- The guard is installed just before the data-loader workers start and kept until the
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

Under DDP every rank stops at the same step: the ranks all-reduce the signal they
received (the requeue signal wins over SIGTERM), so that a rank the signal did not
reach hands the same signal on. If the handler ends the process on any rank (submitit
requeues and exits on rank 0 only), every rank ends.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from dcvq.data.workers import preemption_signals

log = logging.getLogger(__name__)

__all__ = [
    "EvaluationInterrupted",
    "InterruptibleLoader",
    "PreemptionGuard",
    "code_signal",
    "preemption_signals",
    "signal_code",
]


def signal_code(signum: int | None) -> int:
    """A number to all-reduce with MAX across ranks: 0 for no signal, larger for the
    signal to prefer (earlier in ``preemption_signals()``: the requeue signal first)."""
    signals = preemption_signals()
    return 0 if signum is None else len(signals) - signals.index(signum)


def code_signal(code: int) -> int | None:
    """The inverse of :func:`signal_code`."""
    signals = preemption_signals()
    return None if code == 0 else int(signals[len(signals) - code])


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
        # A second signal before the check does not displace the requeue signal.
        if signal_code(signum) > signal_code(self.signum):
            self.signum, self.frame = signum, frame

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def hand_on(self, signum: int | None = None) -> None:
        """Call the previous handler of ``signum`` (may requeue and exit), else exit
        128 + signal. ``signum``: the signal this process received by default; under
        DDP, the one all ranks agreed on (a rank may not have received it itself)."""
        signum = self.signum if signum is None else int(signum)
        if signum is None:
            raise RuntimeError("hand_on: no signal was received and none was given")
        frame = self.frame if signum == self.signum else None
        self.signum = self.frame = None
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)
            return  # e.g. submitit ignores SIGTERM: training goes on
        raise SystemExit(128 + signum)


class EvaluationInterrupted(Exception):
    """A preemption signal stopped an evaluation before its end; nothing was recorded."""


class InterruptibleLoader:
    """``loader``, raising :class:`EvaluationInterrupted` before each batch once ``guard``
    recorded a signal. Other attributes (``dataset``, ``batch_size``) are the loader's."""

    def __init__(self, loader: Any, guard: PreemptionGuard) -> None:
        self.loader, self.guard = loader, guard

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (copy, unpickling): no endless recursion
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def _check(self) -> None:
        if self.guard.requested:
            name = signal.Signals(self.guard.signum).name
            raise EvaluationInterrupted(f"{name} received during the evaluation")

    def __iter__(self) -> Iterator[Any]:
        self._check()  # before the loader starts its workers
        for batch in self.loader:
            self._check()
            yield batch
