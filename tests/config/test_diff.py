"""What counts as a change of results: the rule a re-launch and the report's seeds share."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from dcvq.config.diff import as_run, config_changes, result_changes


def trainer(device: str, precision: str, **more) -> dict:
    return {"trainer": {"device": device, "precision": precision, **more}}


@pytest.mark.parametrize(
    ("saved", "now", "changes"),
    [
        # where a run trained is neutral; what ran there is not
        (trainer("cuda", "fp32"), trainer("cpu", "auto"), []),
        (trainer("cuda:1", "bf16"), trainer("cuda", "auto"), []),
        (trainer("cuda", "auto"), trainer("cpu", "auto"), ["trainer.precision: bf16 -> fp32"]),
        (trainer("cpu", "fp16"), trainer("cpu", "auto"), ["trainer.precision: fp16 -> fp32"]),
        # auto on a device left to the machine is compared as written
        (trainer("auto", "auto"), trainer("cpu", "auto"), ["trainer.precision: auto -> fp32"]),
        (trainer("cpu", "auto", num_workers=0), trainer("cpu", "auto", num_workers=4), []),
        (
            trainer("cpu", "auto", lr=1e-3),
            trainer("cpu", "auto", lr=3e-4),
            ["trainer.lr: 0.001 -> 0.0003"],
        ),
    ],
)
def test_result_changes(saved, now, changes):
    assert result_changes(saved, OmegaConf.create(now)) == changes


def test_as_run_leaves_other_keys_and_configs_without_a_precision():
    assert as_run({"trainer.device": "cpu", "seed": 1}) == {"trainer.device": "cpu", "seed": 1}
    assert (
        as_run({"trainer.device": "mps", "trainer.precision": "auto"})["trainer.precision"]
        == "auto"
    )


def test_config_changes_compares_the_keys_as_written():
    saved = OmegaConf.to_yaml(OmegaConf.create(trainer("cuda", "fp32")))
    now = OmegaConf.create(trainer("cpu", "auto"))
    assert config_changes(saved, now, ["trainer.precision"]) == ["trainer.precision: fp32 -> auto"]
    assert config_changes("", now, ["trainer"]) == []


def test_run_dirs_are_named_by_configuration_not_by_job_number():
    """A sweep's job dirs: the same command names the same runs whatever other options
    its groups hold (job numbers shift when a quantizer YAML is added), and keys that
    cannot change results do not split one run into two."""
    from dcvq.config.diff import run_dir_name

    overrides = ["seed=1", "quantizer=vq", "trainer.lr=0.001", "trainer.num_workers=4",
                 "logger=wandb", "dataset.root=/data/x", "+baseline=gumbel"]  # fmt: skip
    assert run_dir_name("gumbel", 1024, overrides) == (
        "gumbel_n1024,dataset.root=%2Fdata%2Fx,seed=1,trainer.lr=0.001"
    )
    assert run_dir_name("vq", 512, []) == "vq_n512"
