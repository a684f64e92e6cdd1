"""``num_workers: auto`` (the default of training and evaluation): as many data-loader
workers as the machine has CPUs to spare, never PyTorch's "suggested max number of worker"
warning; explicit numbers are used as given."""

from __future__ import annotations

import os
import warnings

import pytest

from dcvq import build
from dcvq.build import build_dataset, build_eval_loader, resolve_num_workers
from dcvq.config import ConfigError, compose, validate
from dcvq.runtime import cpus as cpus_module

WARNING = "suggested max number of worker"


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@pytest.mark.parametrize(
    ("cpus", "env", "expected"),
    [
        (1, {}, 0),  # one CPU: load in the main process
        (2, {}, 1),
        (16, {}, 8),  # capped
        (64, {"TORCHELASTIC_RUN_ID": "x", "LOCAL_WORLD_SIZE": "8"}, 7),  # 8 ranks share 64
        (4, {"TORCHELASTIC_RUN_ID": "x", "LOCAL_WORLD_SIZE": "8"}, 0),
        (128, {"SLURM_CPUS_PER_TASK": "8"}, 7),  # slurm_a100: 8 CPUs per rank, unbound
        (2, {"SLURM_CPUS_PER_TASK": "1"}, 0),  # slurm_local
    ],
)
def test_auto_leaves_one_cpu_per_process(monkeypatch, cpus, env, expected):
    """The CPU counting itself: tests/runtime/test_cpus.py."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setattr(cpus_module, "cgroup_cpu_limit", lambda root=None: None)
    for name in ("TORCHELASTIC_RUN_ID", "LOCAL_WORLD_SIZE", "SLURM_CPUS_PER_TASK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert resolve_num_workers("auto") == expected
    assert resolve_num_workers(5) == 5 and resolve_num_workers(0) == 0


def test_auto_is_the_default_of_training_and_evaluation():
    assert compose().trainer.num_workers == "auto"
    assert compose(config_name="evaluate").num_workers == "auto"


def _loader_warnings(num_workers):
    cfg = compose(["dataset.resolution=32"])
    dataset = build_dataset(cfg, "val", training=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = build_eval_loader(dataset, 2, num_workers, build.torch.device("cpu"))
        next(iter(loader))
    return loader, [str(w.message) for w in caught if WARNING in str(w.message)]


def test_default_starts_no_more_workers_than_cpus():
    loader, caught = _loader_warnings(compose().trainer.num_workers)
    assert caught == [] and loader.num_workers == resolve_num_workers("auto")
    # an explicit number is used as given, even one that draws PyTorch's warning: the
    # check above would see it
    loader, caught = _loader_warnings(_cpus() + 1)
    assert loader.num_workers == _cpus() + 1 and caught


@pytest.mark.parametrize(
    ("overrides", "config_name", "key"),
    [
        (["trainer.num_workers=-1"], "train", "trainer.num_workers=-1"),
        (["trainer.num_workers=many"], "train", "trainer.num_workers='many'"),
        (["num_workers=-2"], "evaluate", "num_workers=-2"),
    ],
)
def test_bad_num_workers_name_the_key(overrides, config_name, key):
    with pytest.raises(ConfigError, match=key) as err:
        validate(compose(overrides, config_name=config_name))
    assert "use auto or a number" in str(err.value)
    validate(compose([f"{key.split('=')[0]}=3"], config_name=config_name))  # ints are fine
