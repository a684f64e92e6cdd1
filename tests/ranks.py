"""Run a test file as ``world`` gloo ranks on this machine (its ``__main__`` takes
``rank world out_dir``): the shared launcher of the quantizers' DDP tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_ranks(script: str, out_dir: Path, world: int = 2, timeout: float = 300) -> None:
    """Starts the ranks, waits for them, fails with a rank's log if one fails."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    procs = [
        subprocess.Popen(
            [sys.executable, script, str(r), str(world), str(out_dir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in range(world)
    ]
    for p in procs:
        log, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, log.decode()
