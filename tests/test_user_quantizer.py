"""A new ablation in two files, README's "Your own quantizer" as written: a quantizer class
in the user's own module and one YAML. It joins ``quantizer=glob(*)``, trains, evaluates,
gets its own wandb run and report row, with nothing else edited."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from dcvq.config import CONF_DIR

README = CONF_DIR.parent / "README.md"


def readme_section() -> str:
    return README.read_text().split("### Your own quantizer\n", 1)[1].split("\n### ", 1)[0]


def readme_files() -> tuple[str, str]:
    """The two files of README's "Your own quantizer": the class and the YAML, as written."""
    section = readme_section()
    (module,) = re.findall(r"```python\n(# my_quantizers.py\n.*?)```", section, flags=re.DOTALL)
    (yaml,) = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    assert "conf/quantizer/my_vq.yaml" in section and "--config-dir my_conf" in section
    return module, yaml


@pytest.mark.slow
def test_a_user_quantizer_joins_the_glob_sweep(
    wandb_records, offline_wandb, tiny_overrides, tmp_path
):
    module, yaml = readme_files()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "my_quantizers.py").write_text(module)
    # The YAML in a config dir of the user's own, added to conf/ with --config-dir (Hydra
    # 1.3's glob does not list options from hydra.searchpath: hydra issue #1942).
    (tmp_path / "my_conf" / "quantizer").mkdir(parents=True)
    (tmp_path / "my_conf" / "quantizer" / "my_vq.yaml").write_text(yaml)
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            str(CONF_DIR.parent / "train.py"),
            "-m",
            "--config-dir",
            str(tmp_path / "my_conf"),
            "quantizer=glob(*,exclude=[t*,s*])",  # vq and my_vq: the paper's duals excluded
            *tiny_overrides,
            "trainer.max_steps=1",
            "eval.max_images=4",
            "logger=wandb",
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        env=os.environ | {"PYTHONPATH": str(tmp_path / "src"), "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and "_n32" in p.name)
    tail = ",eval.max_images=4,experiment=tiny,trainer.max_steps=1"
    assert jobs == ["my_vq_n32" + tail, "vq_n32" + tail]
    for job in jobs:
        assert json.loads((sweep / job / "eval.json").read_text())["n_images"] == 4
    ckpt = torch.load(sweep / jobs[0] / "checkpoints" / "last.pt", weights_only=False)
    assert OmegaConf.create(ckpt["config"]).quantizer._target_ == "my_quantizers.ScaledVQ"
    assert "quantizer.codebook.embedding.weight" in ckpt["model"]

    runs = [wandb_records.read_run(p) for p in wandb_records.find_runs(sweep)]
    assert {r.name for r in runs} == {"my_vq-n32-samples-s0", "vq-n32-samples-s0"}
    assert {r.job_type for r in runs} == {"my_vq-n32", "vq-n32"}

    report = subprocess.run(
        [sys.executable, "-m", "dcvq.report", str(sweep)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-2000:]
    rows = (sweep / "report.csv").read_text().splitlines()
    assert any(",my_vq," in row and "my_vq_n32," in row for row in rows)


def test_the_readme_files_validate_and_build(tmp_path, monkeypatch):
    """The fast half: the README's class and YAML agree (no training)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.utils import instantiate

    from dcvq.config import validate

    module, yaml = readme_files()
    (tmp_path / "my_quantizers.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    # tests/config/test_validate.py imports a module of its own under this name
    monkeypatch.delitem(sys.modules, "my_quantizers", raising=False)
    model = {"embed_dim": 16, "ch": 32, "ch_mult": [1]}
    cfg = OmegaConf.create({"codebook": {"size": 8}, "model": model})
    cfg.quantizer = OmegaConf.create(yaml)
    validate(cfg)
    quantizer = instantiate(cfg.quantizer)
    assert type(quantizer).__name__ == "ScaledVQ" and quantizer.dim == 16
    # the README's example of an argument the YAML does not list, added with a +
    (text,) = re.findall(r"`(\+quantizer\.\w+=[^`]+)`", readme_section())
    override = OverridesParser.create().parse_override(text)
    key, value = override.key_or_group.split(".", 1)[1], override.value()
    assert key not in cfg.quantizer
    cfg.quantizer[key] = value
    validate(cfg)
    assert getattr(instantiate(cfg.quantizer), key) == value
