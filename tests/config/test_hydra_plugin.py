"""Hydra's own compose API finds dcvq's schemas without any dcvq call first: the
``hydra_plugins/dcvq_schemas`` search-path plugin registers them during plugin discovery."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from dcvq.config import CONF_DIR

SCRIPT = textwrap.dedent(
    """
    import sys
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=sys.argv[1], version_base="1.3"):
        train = compose(config_name="train", overrides=["experiment=demo"])
        evaluate = compose(config_name="evaluate", overrides=["checkpoint=x.pt"])
    print(train.trainer.max_steps, train.quantizer._target_, evaluate.eval.protocol)
    # the plugin scan must not make every Hydra app of this environment import torch
    print("torch imported:", "torch" in sys.modules)
    """
)


def test_hydra_compose_without_dcvq_register(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(CONF_DIR)],
        cwd=tmp_path,  # not the repository: the plugin comes from the installed package
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].split()[1:] == ["dcvq.quantizers.DualCodebookQuantizer", "clean"]
    assert lines[1] == "torch imported: False"
