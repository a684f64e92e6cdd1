"""train.py, the entry point, as a user runs it."""

import json
import subprocess
import sys

from dcvq.config import CONF_DIR


def test_a_run_ends_by_saying_what_it_gave_and_where(tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(CONF_DIR.parent / "train.py"), *tiny_overrides,
         f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run_dir / "eval.json").read_text())
    last = proc.stdout.strip().splitlines()[-5:]
    assert f"PSNR {results['psnr']:.2f} dB" in last[0] and "at step 4" in last[0]
    usage = results["codebooks"]
    assert last[1] == (
        f"codebook usage: global {usage['global']['usage']:.1f} %, "
        f"local {usage['local']['usage']:.1f} %"
    )
    assert last[2] == f"run directory: {run_dir}"
    assert last[4].endswith(str(run_dir / "samples" / "step_0000004.png"))
