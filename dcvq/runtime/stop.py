"""Stop signals, acted on at safe points: one protocol for training, the prior and the
evaluation command line.

Slurm and submitit stop a job early with a signal: the requeue signal (USR2, sent before
a time limit or by ``scancel --signal``) or SIGTERM (preemption, cancellation); see
:func:`dcvq.data.workers.preemption_signals`. :class:`StopSignals` installs a handler
that only records the signal (of several, the one earliest in its list: the requeue
signal first). The program acts on it at a *safe point*, where stopping breaks nothing:

- :meth:`StopSignals.stop_here`, at a step boundary of work that the ranks do together.
  Every rank calls it at the same point; the ranks agree on the signal (an all-reduce: a
  rank the signal did not reach learns it from the others, the requeue signal wins), the
  caller writes its checkpoint and the signal is handed on (:meth:`StopSignals.hand_on`);
- :meth:`StopSignals.batches`, before each batch of work that one rank does alone (an
  evaluation): :class:`Stopped` is raised on the rank that received a signal;
- with ``at_once=True``, where there is nothing to checkpoint (the evaluation command
  line): anywhere, the handler raising :class:`Stopped` itself (a model build or FID
  reference statistics can take minutes), except while :meth:`StopSignals.batches`
  receives a batch from the data-loader workers: stopping mid-handshake of the tensors'
  shared memory leaves a worker with a broken connection and a traceback, so the batch
  is received whole, then the work stops.

Handing a signal on calls the handler installed before (submitit's requeues the job on
USR2 and exits, on rank 0 only, and ignores SIGTERM: the work goes on); without one (a
plain process, torchrun; Python's own SIGINT handler counts as none) the process exits
with status 128 + signal. If that ends any rank, every rank ends: a rank going on alone
would wait for the others forever.

Forked processes (the data-loader workers) inherit the handler; in them it does nothing,
the main process decides (:mod:`dcvq.data.workers` has them ignore the preemption
signals, and the main process stops them as usual).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

import torch

from dcvq.data.workers import preemption_signals
from dcvq.runtime.distributed import DistEnv, max_over_ranks

log = logging.getLogger(__name__)


class Stopped(BaseException):
    """A stop signal ended the work under way at a safe point. A BaseException: ``except
    Exception`` (Hydra's included) does not swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"{signal.Signals(signum).name} received")
        self.signum = signum


class StopSignals:
    """``with StopSignals(...) as stop:`` records ``signals`` (default: the preemption
    signals) until the block ends, then restores the previous handlers.

    ``env`` and ``device``: this process's rank and device, for the agreement across
    ranks (default: a single process). ``at_once``: raise :class:`Stopped` from the
    handler (see the module docstring). ``action``: what the log says happens next.
    """

    def __init__(
        self,
        signals: Sequence[int] | None = None,
        *,
        env: DistEnv | None = None,
        device: torch.device | str = "cpu",
        at_once: bool = False,
        action: str = "stopping at the next safe point",
    ) -> None:
        self.signals = list(signals if signals is not None else preemption_signals())
        self.env = env if env is not None else DistEnv()
        self.device = torch.device(device)
        self.at_once, self.action = at_once, action
        #: the signal this process received (None: none, or handed on since)
        self.signum: int | None = None
        self.frame: FrameType | None = None
        self._previous: dict[int, Callable | int | None] = {}
        self._pid = os.getpid()
        self._receiving = False
        self._raised = False

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # else signals stay as set
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._record)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    # ---- the handler -------------------------------------------------------------------
    def _code(self, signum: int | None) -> int:
        """0 for no signal, larger for the signal to prefer (earlier in ``signals``): a
        number the ranks all-reduce with MAX."""
        return 0 if signum is None else len(self.signals) - self.signals.index(signum)

    def _signal(self, code: int) -> int | None:
        return None if code == 0 else int(self.signals[len(self.signals) - code])

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:
            return  # a forked data-loader worker: the main process decides
        if self._code(signum) > self._code(self.signum):  # the requeue signal stays
            self.signum, self.frame = signum, frame
        if self.at_once and not self._receiving and not self._raised:
            self._raised = True  # once: a second signal must not break the stopping
            raise Stopped(self.signum)
        log.warning("received %s: %s", signal.Signals(signum).name, self.action)

    @property
    def requested(self) -> bool:
        """Whether this process received a signal (not handed on yet)."""
        return self.signum is not None

    # ---- safe points -------------------------------------------------------------------
    def check(self) -> None:
        """A safe point of this rank alone: :class:`Stopped` if it received a signal."""
        if self.signum is not None:
            self._raised = True
            raise Stopped(self.signum)

    def batches(self, loader: Any) -> SafeBatches:
        """``loader`` with a safe point (:meth:`check`) before it starts its workers and
        after each batch is received whole. For work one rank does alone: ranks that must
        stop at the same step use :meth:`stop_here`."""
        return SafeBatches(loader, self)

    @contextmanager
    def receiving(self) -> Iterator[None]:
        """A section the handler does not interrupt (``at_once``): a batch received from
        the loader workers. A signal in it is recorded; the next :meth:`check` acts."""
        self._receiving = True
        try:
            yield
        finally:
            self._receiving = False

    def agreed(self) -> int | None:
        """The signal any rank received (the requeue signal first), or None. A collective:
        every rank calls it at the same point."""
        return self._signal(max_over_ranks(self._code(self.signum), self.env, self.device))

    def stop_here(self, checkpoint: Callable[[], Any] | None = None) -> None:
        """A safe point of every rank (a collective): if any rank received a signal, call
        ``checkpoint`` (on every rank) and :meth:`hand_on` the agreed signal, which ends
        the process unless the previous handler lets the work go on."""
        signum = self.agreed()
        if signum is None:
            return
        if checkpoint is not None:
            checkpoint()
        self.hand_on(signum)

    def hand_on(self, signum: int | None = None) -> None:
        """Call the previous handler of ``signum`` (it may requeue and exit, or return:
        the work goes on), else exit 128 + signal; if that ends any rank, every rank ends
        (a collective). ``signum``: the signal the ranks agreed on (a rank may not have
        received it itself); by default the one this process received."""
        signum = self.signum if signum is None else int(signum)
        if signum is None:
            raise RuntimeError("hand_on: no signal was received and none was given")
        frame = self.frame if signum == self.signum else None
        self.signum = self.frame = None
        previous = self._previous.get(signum)
        ending: BaseException | None = None
        try:
            if not callable(previous) or previous is signal.default_int_handler:
                raise SystemExit(128 + signum)
            previous(signum, frame)
        except BaseException as e:  # SystemExit, or the handler's own error
            ending = e
        if max_over_ranks(int(ending is not None), self.env, self.device) and ending is None:
            log.warning("another rank ends after %s: ending too", signal.Signals(signum).name)
            ending = SystemExit(128 + signum)
        if ending is not None:
            raise ending


class SafeBatches:
    """A loader's batches with the safe points of :meth:`StopSignals.batches`. Other
    attributes (``dataset``, ``batch_size``) are the loader's."""

    def __init__(self, loader: Any, stop: StopSignals) -> None:
        self.loader, self.stop = loader, stop

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (copy, unpickling): no endless recursion
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        stop, end = self.stop, object()
        stop.check()
        with stop.receiving():  # starting the workers, too
            batches = iter(self.loader)
        while True:
            with stop.receiving():
                batch = next(batches, end)
            if batch is end:
                return
            stop.check()
            yield batch
