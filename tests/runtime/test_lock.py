"""One process trains a run dir at a time (dcvq/runtime/lock.py)."""

import multiprocessing
import subprocess
import sys
import time

import pytest

from dcvq.runtime.lock import RunDirInUse, run_dir_lock
from dcvq.trainer import train


def test_a_held_run_dir_is_refused_and_free_again_when_released(tmp_path):
    # another open of the directory is another holder, as another process would be
    refused = pytest.raises(RunDirInUse, match="being trained by another process")
    with run_dir_lock(tmp_path / "run"), refused, run_dir_lock(tmp_path / "run"):
        pass
    with run_dir_lock(tmp_path / "run"):
        pass  # released at the end of the block
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no lock file left behind


def test_training_refuses_a_run_dir_another_process_holds(tiny_cfg, tmp_path):
    """As two jobs of a sweep that differ only in trainer.num_workers would: the second
    stops before it reads or writes anything there."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
         "os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
         "time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirInUse):
            train(tiny_cfg(), tmp_path)
        assert list(tmp_path.iterdir()) == []
    finally:
        holder.kill()
        holder.wait()
    assert train(tiny_cfg(), tmp_path)["step"] == 4  # the lock went with the process


def _wait(started, seconds: float) -> None:
    started.set()
    time.sleep(seconds)


def test_forked_workers_do_not_keep_the_run_dir_held(tmp_path):
    """A data-loader worker forked while the lock is held must not hold it after the
    trainer lets go (a resumed run in the same process takes it again)."""
    ctx = multiprocessing.get_context("fork")
    started = ctx.Event()
    with run_dir_lock(tmp_path):
        worker = ctx.Process(target=_wait, args=(started, 30), daemon=True)
        worker.start()
        assert started.wait(30)  # the child runs (its fork handlers ran before)
    try:
        with run_dir_lock(tmp_path):
            pass
    finally:
        worker.kill()
