"""The stop protocol (dcvq.runtime.stop), once for its three users (the training loop, the
prior, the evaluation command line), which are tested for their wiring only: the handler
records, safe points act, the ranks agree, the previous handler is handed the signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import group_alive

from dcvq.runtime.stop import Stopped, StopSignals

USR2, TERM = signal.SIGUSR2, signal.SIGTERM
REPO = Path(__file__).resolve().parents[2]


# ---- in this process: signal.raise_signal runs the Python handler before it returns --------


def test_the_handler_records_the_requeue_signal_first_and_is_removed_after():
    for order in ([TERM, USR2], [USR2, TERM]):
        with StopSignals() as stop:
            assert not stop.requested
            for sig in order:
                signal.raise_signal(sig)
        assert stop.signum == USR2
    assert signal.getsignal(USR2) == signal.SIG_DFL  # the handlers before are back


def test_stop_here_without_a_signal_goes_on():
    calls = []
    with StopSignals() as stop:
        stop.stop_here(lambda: calls.append("checkpoint"))
    assert calls == []


def test_stop_here_checkpoints_then_exits_128_plus_signal():
    calls = []
    with StopSignals() as stop:
        signal.raise_signal(TERM)
        assert calls == []  # recorded only: nothing happens before the safe point
        with pytest.raises(SystemExit) as info:
            stop.stop_here(lambda: calls.append("checkpoint"))
    assert info.value.code == 128 + TERM and calls == ["checkpoint"]


def test_hand_on_a_signal_this_process_did_not_receive():
    """Under DDP a rank that the signal did not reach is told by the others which one."""
    with StopSignals() as stop, pytest.raises(SystemExit) as info:
        stop.hand_on(USR2)
    assert info.value.code == 128 + USR2
    with StopSignals() as stop, pytest.raises(RuntimeError, match="no signal"):
        stop.hand_on()


def test_the_previous_handler_is_handed_the_signal_and_may_let_the_work_go_on():
    seen = []
    previous = signal.signal(TERM, lambda s, f: seen.append(s))  # submitit ignores SIGTERM
    try:
        with StopSignals() as stop:
            signal.raise_signal(TERM)
            stop.stop_here()
            assert seen == [TERM] and not stop.requested  # handed on, and the work goes on
            stop.hand_on(TERM)  # the agreed signal, received elsewhere: no frame
    finally:
        signal.signal(TERM, previous)
    assert seen == [TERM, TERM]


def test_python_s_own_sigint_handler_counts_as_none():
    """A KeyboardInterrupt would print a traceback: the exit status is 128 + SIGINT."""
    # set here: a process started in the background (nohup ... &) inherits SIGINT ignored,
    # and Python then installs no handler of its own
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with StopSignals([signal.SIGINT]) as stop, pytest.raises(SystemExit) as info:
            signal.raise_signal(signal.SIGINT)
            stop.stop_here()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert info.value.code == 128 + signal.SIGINT


class Loader:
    """Three batches; ``signal_at`` sends a signal while batch ``signal_at`` is received."""

    dataset = "the loader's dataset"

    def __init__(self, signal_at: int | None = None) -> None:
        self.signal_at, self.received = signal_at, []

    def __len__(self) -> int:
        return 3

    def __iter__(self):
        for i in range(3):
            if i == self.signal_at:
                signal.raise_signal(USR2)
            self.received.append(i)
            yield i


def test_batches_stop_before_the_next_batch():
    """Work one rank does alone (an evaluation) stops before its next batch."""
    loader = Loader()
    with StopSignals() as stop:
        batches = stop.batches(loader)
        assert len(batches) == 3 and batches.dataset == "the loader's dataset"
        done = []
        with pytest.raises(Stopped, match="SIGUSR2 received") as info:
            for i in batches:
                done.append(i)
                signal.raise_signal(USR2)
        assert done == [0] and loader.received == [0, 1] and info.value.signum == USR2
        with pytest.raises(Stopped):  # before the loader starts (its workers)
            next(iter(stop.batches(loader)))
        assert loader.received == [0, 1]


def test_at_once_stops_in_the_handler_but_receives_a_batch_whole():
    with StopSignals(at_once=True) as stop:
        with pytest.raises(Stopped):
            signal.raise_signal(TERM)
        signal.raise_signal(TERM)  # once stopping, a second signal is only recorded
    loader = Loader(signal_at=1)
    with StopSignals(at_once=True) as stop:
        done = []
        with pytest.raises(Stopped) as info:
            for i in stop.batches(loader):
                done.append(i)
    assert done == [0] and loader.received == [0, 1] and info.value.signum == USR2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_process_leaves_the_signal_to_the_main_process():
    """A loader worker inherits the handler: there it neither stops nor records."""
    with StopSignals([signal.SIGUSR1], at_once=True) as stop:
        pid = os.fork()
        if pid == 0:  # the child: report with the exit status alone, never return to pytest
            code = 3
            try:
                signal.raise_signal(signal.SIGUSR1)
                code = 0 if stop.signum is None else 1
            except BaseException:
                code = 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert stop.signum is None


# ---- real processes, loader workers included, signalled from outside as Slurm does ---------


AT_ONCE_SCRIPT = r"""
import signal, sys, time
import torch
from torch.utils.data import Dataset
from dcvq.data.workers import SignalSafeLoader
from dcvq.runtime.stop import StopSignals, Stopped

class Slow(Dataset):
    def __len__(self):
        return 100_000

    def __getitem__(self, i):
        time.sleep(0.002)
        return torch.full((3, 64, 64), float(i))  # through the workers' shared memory

signals = [signal.SIGUSR2, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1]
with StopSignals(signals, at_once=True) as stop:
    try:
        loader = SignalSafeLoader(Slow(), batch_size=4, num_workers=2)
        for i, batch in enumerate(stop.batches(loader)):
            print(f"batch {i}", flush=True)
    except Stopped as s:
        print(f"stopped by {signal.Signals(s.signum).name}", flush=True)
        stop.hand_on(s.signum)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups, /proc")
@pytest.mark.parametrize("sig", [USR2, signal.SIGUSR1], ids=["USR2", "USR1"])
def test_at_once_with_loader_workers_exits_128_plus_signal_without_tracebacks(tmp_path, sig):
    """The whole process group signalled mid-iteration: the workers ignore USR2
    (dcvq.data.workers) and leave USR1 to the main process (the handler they inherit does
    nothing there); the main process stops with no traceback from anyone."""
    script = tmp_path / "at_once.py"
    script.write_text(AT_ONCE_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script)], cwd=REPO, start_new_session=True, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        lines = []
        while len(lines) < 20:  # a few batches through the workers: they are all running
            line = proc.stdout.readline()
            assert line, "".join(lines)[-3000:]
            lines.append(line)
        os.killpg(proc.pid, sig)
        out = "".join(lines) + proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + sig, out[-3000:]
    assert f"stopped by {sig.name}" in out
    assert "Traceback" not in out and "exited unexpectedly" not in out, out[-3000:]
    deadline = time.monotonic() + 20  # the workers end with the main process
    while group_alive(proc.pid):
        assert time.monotonic() < deadline, f"left behind: {group_alive(proc.pid)}"
        time.sleep(0.1)


RANKS_SCRIPT = r"""
import json, multiprocessing, os, signal, subprocess, sys, time
import torch
from torch.utils.data import Dataset
from dcvq.data.workers import SignalSafeLoader
from dcvq.runtime.distributed import init_distributed
from dcvq.runtime.stop import StopSignals

class Steps(Dataset):
    def __len__(self):
        return 1000

    def __getitem__(self, i):
        return torch.tensor(i)

def signal_this_rank(sig):
    # As Slurm: this process and its loader workers, from another process.
    pids = [os.getpid(), *(p.pid for p in multiprocessing.active_children())]
    subprocess.run(["kill", "-s", sig.name.removeprefix("SIG"), *map(str, pids)], check=True)

env = init_distributed("cpu", timeout_min=1)
seen = []

def submitit_like(signum, frame):
    # submitit's handlers: SIGTERM ignored; USR2 requeues the job and exits, on rank 0 only
    seen.append(signal.Signals(signum).name)
    if signum == signal.SIGUSR2 and env.rank == 0:
        sys.exit(-1)

signal.signal(signal.SIGTERM, submitit_like)
signal.signal(signal.SIGUSR2, submitit_like)
loader = SignalSafeLoader(Steps(), batch_size=1, num_workers=2, persistent_workers=True)
step, checkpoints, outcome = 0, [], "finished"
try:
    with StopSignals(env=env) as stop:
        for batch in loader:
            step += 1
            if env.rank == 1 and step in (2, 5):  # the signal reaches rank 1 alone
                signal_this_rank(signal.SIGTERM if step == 2 else signal.SIGUSR2)
                while not stop.requested:
                    time.sleep(0.01)
            stop.stop_here(lambda: checkpoints.append(step))
            if step == 8:
                break
except SystemExit as e:
    outcome = f"exit {e.code}"
record = {"outcome": outcome, "step": step, "checkpoints": checkpoints, "handed": seen}
with open(os.path.join(sys.argv[1], f"rank{env.rank}.json"), "w") as f:
    json.dump(record, f)
torch.distributed.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kill(1)")
def test_a_signal_to_one_rank_stops_both_at_the_same_step_with_one_checkpoint(tmp_path):
    """torchrun, 2 CPU ranks (gloo), 2 loader workers each; the signals reach rank 1 (and
    its workers) alone. SIGTERM at step 2: both checkpoint at step 2, both hand it on
    and both go on (submitit ignores it). USR2 at step 5: both checkpoint at step 5 and
    hand it on; submitit's handler ends rank 0 and returns on rank 1, which ends too."""
    script = tmp_path / "ranks.py"
    script.write_text(RANKS_SCRIPT)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "exited unexpectedly" not in out, out[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank in ranks:
        assert rank["step"] == 5 and rank["checkpoints"] == [2, 5], ranks
        assert rank["handed"] == ["SIGTERM", "SIGUSR2"], ranks
    assert [r["outcome"] for r in ranks] == ["exit -1", f"exit {128 + USR2}"]
