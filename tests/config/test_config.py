"""The Hydra configuration: groups, the Table 2 glob, validation of bad input."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf.errors import ConfigAttributeError, ValidationError

from dcvq import build_model
from dcvq.config import CONF_DIR, ConfigError, compose, validate

REPO = CONF_DIR.parent

TABLE2 = {"vq", "s128_s128", "t192_s64", "t64_s192", "t128_s128"}


def test_defaults_are_the_papers_setting():
    cfg = compose()
    assert cfg.quantizer.global_dim == 128 and cfg.quantizer.global_transformer
    assert cfg.codebook.size == 512 and cfg.quantizer.codebook_size == 512
    assert list(cfg.model.ch_mult) == [1, 1, 2, 2, 4] and cfg.model.attn_resolutions == [16]
    assert cfg.loss.disc_start == 10000 and cfg.loss.disc_weight == 0.8
    assert cfg.loss.perceptual_weight == 1.25 and cfg.trainer.base_lr == 4.5e-6
    assert cfg.dataset._target_ == "dcvq.data.SampleImages"


def quantizer_options(*config_dirs: Path) -> set[str]:
    """The quantizer group: the YAMLs of conf/quantizer and of each ``--config-dir``."""
    dirs = [CONF_DIR, *config_dirs]
    return {p.stem for d in dirs for p in (d / "quantizer").glob("*.yaml")}


def sweep_jobs(overrides: list[str], tmp_path: Path, config_dir: Path | None = None) -> list:
    """``(quantizer option, codebook size)`` of every job of ``python train.py -m
    [--config-dir config_dir] overrides``, run by Hydra as train.py would with a no-op
    task (the search path is built as Hydra builds it for ``--config-dir``)."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from dcvq.config import register

    register()
    jobs = []

    def task(cfg):
        jobs.append((HydraConfig.get().runtime.choices.quantizer, cfg.codebook.size))

    search_path = create_automatic_config_search_path(str(REPO / "train.py"), None, "conf")
    if config_dir is not None:  # as hydra._internal.utils._run_hydra adds --config-dir
        anchor = SearchPathQuery(provider="schema")
        search_path.prepend("command-line", f"file://{config_dir}", anchor=anchor)
    hydra = Hydra.create_main_hydra2(task_name="train", config_search_path=search_path)
    try:
        hydra.multirun(
            config_name="train",
            task_function=task,
            overrides=[*overrides, "hydra/launcher=basic", f"hydra.sweep.dir={tmp_path}"],
            with_log_configuration=False,
        )
    finally:
        GlobalHydra.instance().clear()
    return jobs


def assert_glob_sweeps_the_group(jobs: list, options: set[str]) -> None:
    """One job per option and size, the paper's five among the options, nothing else
    (a schema registered in the quantizer group would be swept as an option)."""
    assert TABLE2.issubset(options)
    assert sorted(jobs) == sorted((o, n) for o in options for n in (512, 1024))


def test_quantizer_group_has_the_table2_rows():
    """The paper's five are options; a YAML of your own may join them (README, "Your own
    quantizer": its class and its YAML, nothing else)."""
    assert TABLE2.issubset(quantizer_options())


def test_glob_sweep_expands_to_the_quantizer_group_times_sizes(tmp_path):
    """``quantizer=glob(*)`` is every option of the group: on a clean checkout Table 2 x
    Table 3, 5 quantizers x 2 sizes = 10 jobs."""
    jobs = sweep_jobs(["quantizer=glob(*)", "codebook.size=512,1024"], tmp_path)
    assert_glob_sweeps_the_group(jobs, quantizer_options())
    if quantizer_options() == TABLE2:  # nothing of your own added
        assert len(jobs) == 10


def test_a_quantizer_yaml_of_your_own_joins_the_glob_sweep(tmp_path):
    own = tmp_path / "my_conf"
    (own / "quantizer").mkdir(parents=True)
    (own / "quantizer" / "my_vq.yaml").write_text((CONF_DIR / "quantizer" / "vq.yaml").read_text())
    jobs = sweep_jobs(["quantizer=glob(*)", "codebook.size=512,1024"], tmp_path / "sweep", own)
    assert ("my_vq", 512) in jobs and quantizer_options(own) == quantizer_options() | {"my_vq"}
    assert_glob_sweeps_the_group(jobs, quantizer_options(own))


@pytest.mark.parametrize("name", sorted(TABLE2))
def test_every_option_builds(name):
    cfg = compose(
        [
            f"quantizer={name}",
            "model=tiny",
            "codebook.size=8",
            *(["quantizer.transformer_layers=1"] if name.startswith("t") else []),
        ]
    )
    validate(cfg)
    model = build_model(cfg)
    assert model.quantizer.dim == 256
    has_transformer = any("transformer" in n for n, _ in model.named_parameters())
    assert has_transformer == name.startswith("t")


@pytest.mark.parametrize(
    ("override", "error", "cause", "message"),
    [
        (
            "codebook.size=abc",
            ConfigCompositionException,
            ValidationError,
            "Value 'abc' of type 'str' could not be converted",
        ),
        ("quantizer.foo=1", ConfigCompositionException, ConfigAttributeError, "foo"),
        ("quantizer=nope", MissingConfigException, None, "Could not find 'quantizer/nope'"),
        ("trainer.max_stepz=3", ConfigCompositionException, ConfigAttributeError, "max_stepz"),
    ],
)
def test_bad_overrides_fail_to_compose(override, error, cause, message):
    """Hydra's exception (exactly: MissingConfigException is a subclass) and OmegaConf's
    error behind it."""
    with pytest.raises(error) as info:
        compose([override])
    assert type(info.value) is error
    if cause is None:
        assert info.value.__cause__ is None
    else:
        assert isinstance(info.value.__cause__, cause)
    assert message in str(info.value) + str(info.value.__cause__)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["quantizer.global_dim=100"], "global_dim + quantizer.local_dim = 100 + 128"),
        (
            ["quantizer.global_dim=124", "quantizer.local_dim=132"],
            "quantizer.transformer_heads=8 must divide quantizer.global_dim=124",
        ),
        (["codebook.size=1"], "codebook.size=1"),
        (["trainer.precision=fp8"], "trainer.precision"),
        (["eval.protocol=fancy"], "eval.protocol"),
        (["trainer.log_every=0"], "trainer.log_every=0 must be >= 1"),
        (["trainer.dist_timeout_min=0"], "trainer.dist_timeout_min=0"),
        (["model.ch=16", "model.ch_mult=[2,4]"], "model.ch=16: must be a multiple of 32"),
        (["dataset.resolution=200"], "dataset.resolution=200: must be a multiple of 16"),
    ],
)
def test_inconsistent_values_name_the_keys(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("+", r"\+")):
        validate(compose(overrides))


def test_cli_rejects_bad_config_before_training(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "quantizer.global_dim=100",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "quantizer.global_dim + quantizer.local_dim" in proc.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_cli_rejects_unknown_option(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "quantizer=t128_s129"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "Could not find 'quantizer/t128_s129'" in proc.stderr
    assert "t128_s128" in proc.stderr  # Hydra lists the available options
    assert not Path(tmp_path / "outputs").exists()
