"""WandbLogger against real wandb in offline mode, read back from the run file.

No test may reach a server: every test runs with no API key, a private HOME and wandb
dirs under tmp, and mode offline/disabled (online only with a fake ``wandb.init``).
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from dcvq.logger.wandb import (
    STATE_FILE,
    WandbLogger,
    has_api_key,
    resolve_mode,
    usage_histogram_bins,
)

REPO = Path(__file__).resolve().parents[2]
# Keep each wandb start cheap and self-contained: no system-stats sampler, no git probing,
# no requirements/code capture, no console capture thread.
FAST = {
    "x_disable_stats": True,
    "disable_git": True,
    "save_code": False,
    "x_save_requirements": False,
    "console": "off",
}


def _isolate(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """No credentials anywhere wandb looks, and nothing written outside ``home``."""
    for var in (
        "WANDB_API_KEY",
        "WANDB_IDENTITY_TOKEN_FILE",
        "NETRC",
        "WANDB_BASE_URL",
        "WANDB_MODE",
        "WANDB_DIR",
        "WANDB_RUN_ID",
        "WANDB_RESUME",
        "WANDB_RUN_GROUP",
        "WANDB_JOB_TYPE",
        "WANDB_NAME",
        "WANDB_PROJECT",
        "WANDB_ENTITY",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
    ):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    _isolate(monkeypatch, home)
    yield home
    import wandb

    # Stop wandb's service process so the next test starts from its own environment.
    wandb.teardown()


def _png(path: Path) -> Path:
    Image.fromarray(np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)).save(path)
    return path


def _counts(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(0, 50, (n,), generator=g)
    c[::7] = 0  # some dead codes
    return c


# -- pure helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "nbins", "group"),
    [(1024, 512, 2), (512, 512, 1), (513, 257, 2), (1500, 500, 3), (100, 100, 1)],
)
def test_usage_histogram_bins_cover_every_code(n, nbins, group):
    counts = np.arange(n) % 5
    values, edges = usage_histogram_bins(counts)
    assert len(values) == nbins <= 512 and len(edges) == nbins + 1
    assert edges[0] == 0 and edges[-1] == n and np.all(np.diff(edges) > 0)
    assert values.sum() == counts.sum()
    assert values[0] == counts[:group].sum()


def test_resolve_mode(monkeypatch, tmp_path):
    _isolate(monkeypatch, tmp_path)
    assert not has_api_key()
    assert resolve_mode(None) == "offline"  # no key: never online, never a prompt
    monkeypatch.setenv("WANDB_MODE", "")  # empty means unset (wandb itself crashes on it)
    assert resolve_mode(None) == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode(None) == "disabled"
    assert resolve_mode("offline") == "offline"  # config wins over the environment
    assert resolve_mode("dryrun") == "offline"
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / ".netrc").write_text(
        "machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n"
    )
    (tmp_path / ".netrc").chmod(0o600)
    assert has_api_key() and resolve_mode(None) == "online"
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert resolve_mode(None) == "offline"  # a key for another host does not count
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert resolve_mode(None) == "online"
    with pytest.raises(ValueError, match="logger.mode"):
        resolve_mode("sometimes")


# -- real offline runs ------------------------------------------------------------------


def test_offline_run_records_config_metrics_usage_and_image(wandb_records, wandb_env, tmp_path):
    run_dir = tmp_path / "job"
    config = {
        "quantizer": {"name": "dual", "global_dim": 8},
        "codebook": {"size": 1024},
        # Larger than a 32 KiB block: the config record spans blocks in wandb's own log.
        "blob": "x" * 70_000,
    }
    logger = WandbLogger(
        group="sweep-A",
        name="t128_s128-n1024-samples",
        job_type="t128_s128",
        tags=["test"],
        settings=FAST,
    )
    logger.start(config, run_dir, resumed_from_step=0)
    assert logger.resolved_mode == "offline"
    logger.log_metrics({"train/loss": 1.5, "train/psnr": torch.tensor(20.0)}, step=1)
    logger.log_metrics({"train/loss": 1.25}, step=2)
    counts = {"global": _counts(1024, 0), "local": _counts(1024, 1)}
    logger.log_metrics({"val/usage_global": 85.0}, step=5)
    logger.log_usage(counts, step=5)
    logger.log_image("val/reconstructions", _png(tmp_path / "grid.png"), step=5)
    logger.finish()
    logger.finish()  # a second call (error path after normal end) is harmless

    (path,) = wandb_records.find_runs(run_dir)
    assert path.is_relative_to(run_dir / "wandb")
    run = wandb_records.read_finished(path)
    assert run.complete and run.finished and run.exit_code == 0
    assert run.group == "sweep-A" and run.job_type == "t128_s128"
    assert run.name == "t128_s128-n1024-samples" and run.tags == ["test"]
    assert run.project == "dcvq"
    assert run.config["quantizer"] == {"name": "dual", "global_dim": 8}
    assert run.config["codebook"] == {"size": 1024}
    assert run.config["blob"] == "x" * 70_000
    assert run.config["resumed_from_step"] == 0

    assert [row["_step"] for row in run.history] == [1, 2, 5]
    assert run.series("train/loss") == [(1, 1.5), (2, 1.25)]
    assert run.series("train/psnr") == [(1, 20.0)]
    row = run.history[-1]  # same-step calls merge into one row
    assert row["val/usage_global"] == 85.0
    for name, vec in counts.items():
        hist = row[f"usage/{name}_hist"]
        assert hist["_type"] == "histogram"
        assert len(hist["values"]) == 512 and hist["bins"][-1] == 1024
        assert sum(hist["values"]) == int(vec.sum())
        table_ref = row[f"usage/{name}_curve_table"]
        assert table_ref["_type"] == "table-file" and table_ref["nrows"] == 1024
        table = json.loads((path.parent / "files" / table_ref["path"]).read_text())
        assert table["columns"] == ["rank", "code", "count", "fraction"]
        full = {code: count for _, code, count, _ in table["data"]}
        assert full == {i: int(v) for i, v in enumerate(vec)}  # every code, exact counts
        fractions = [r[3] for r in table["data"]]
        assert fractions == sorted(fractions, reverse=True)
        assert f"usage/{name}_curve" in run.internal_config["visualize"]
    image = row["val/reconstructions"]
    assert image["_type"] == "image-file" and image["width"] == 16
    assert (path.parent / "files" / image["path"]).is_file()
    assert run.summary["train/loss"] == 1.25

    state = json.loads((run_dir / STATE_FILE).read_text())
    assert state["runs"] == [
        {"id": run.run_id, "mode": "offline", "name": "t128_s128-n1024-samples"}
    ]


def test_two_loggers_in_one_process_make_two_runs(wandb_records, wandb_env, tmp_path):
    ids = []
    for job in range(2):
        logger = WandbLogger(group="sweep", name=f"job{job}", settings=FAST)
        logger.start({"job": job}, tmp_path / str(job), resumed_from_step=0)
        logger.log_metrics({"train/loss": float(job)}, step=1)
        logger.finish()
        (path,) = wandb_records.find_runs(tmp_path / str(job))
        run = wandb_records.read_finished(path)
        assert run.config["job"] == job and run.name == f"job{job}"
        assert run.series("train/loss") == [(1, float(job))]
        ids.append(run.run_id)
    assert ids[0] != ids[1]


def test_offline_resume_is_a_new_run_in_the_same_group(wandb_records, wandb_env, tmp_path):
    run_dir = tmp_path / "job"
    first = WandbLogger(group="sweep-B", name="vq-n512-samples", settings=FAST)
    first.start({"lr": 1.0}, run_dir, resumed_from_step=0)
    first.log_metrics({"train/loss": 3.0}, step=50)
    first.finish()

    # The requeued job: a fresh logger (a fresh process in real life), same run dir. Its
    # own group setting differs on purpose: the stored group of the first run wins.
    for step in (100, 200):
        again = WandbLogger(group="other", name="vq-n512-samples", settings=FAST)
        again.start({"lr": 1.0}, run_dir, resumed_from_step=step)
        again.log_metrics({"train/loss": 2.0}, step=step + 1)
        again.finish()

    runs = [wandb_records.read_finished(p) for p in wandb_records.find_runs(run_dir)]
    assert len(runs) == 3 and len({r.run_id for r in runs}) == 3
    assert {r.group for r in runs} == {"sweep-B"}
    assert [r.name for r in runs] == [
        "vq-n512-samples",
        "vq-n512-samples-resume@100",
        "vq-n512-samples-resume@200",
    ]
    assert [r.config["resumed_from_step"] for r in runs] == [0, 100, 200]
    assert "continues_run_id" not in runs[0].config
    assert {r.config["continues_run_id"] for r in runs[1:]} == {runs[0].run_id}
    assert runs[2].series("train/loss") == [(201, 2.0)]
    state = json.loads((run_dir / STATE_FILE).read_text())
    assert [r["id"] for r in state["runs"]] == [r.run_id for r in runs]


def test_a_crash_is_recorded_as_a_failed_run(wandb_records, wandb_env, tmp_path):
    logger = WandbLogger(settings=FAST)
    logger.start({}, tmp_path / "job", resumed_from_step=0)
    with pytest.raises(ZeroDivisionError):
        try:
            logger.log_metrics({"train/loss": 1.0}, step=1)
            1 / 0  # noqa: B018 - the crash the trainer's finally sees
        finally:
            logger.finish()
    (path,) = wandb_records.find_runs(tmp_path / "job")
    run = wandb_records.read_finished(path)
    assert run.exit_code == 1 and run.series("train/loss") == [(1, 1.0)]


def test_disabled_mode_writes_nothing(wandb_env, tmp_path, monkeypatch):
    for mode, env in (("disabled", None), (None, "disabled")):
        if env:
            monkeypatch.setenv("WANDB_MODE", env)
        run_dir = tmp_path / f"job-{mode}"
        run_dir.mkdir()
        logger = WandbLogger(mode=mode, settings=FAST)
        logger.start({"a": 1}, run_dir, resumed_from_step=0)
        logger.log_metrics({"train/loss": 1.0}, step=1)
        logger.log_usage({"global": _counts(1024, 0)}, step=1)
        logger.log_image("grid", _png(tmp_path / "g.png"), step=1)
        logger.finish()
        assert logger.resolved_mode == "disabled"
        assert list(run_dir.iterdir()) == []


def test_default_group_is_the_sweep_or_the_run_dir(wandb_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    in_sweep = WandbLogger(sweep_dir="multirun/2026-01-01/12-00-00", job_num=3)
    assert in_sweep._default_group(tmp_path / "multirun/x/3") == "multirun/2026-01-01/12-00-00"
    single = WandbLogger(sweep_dir="multirun/2026-01-01/12-00-00", job_num=None)
    assert single._default_group(tmp_path / "outputs" / "run1") == "outputs/run1"
    assert WandbLogger(group="g", job_num=3, sweep_dir="s")._default_group(tmp_path) == "g"


# -- online paths, with wandb.init faked (no server in tests) ---------------------------


class _FakeRun:
    """Just what WandbLogger touches on a run."""

    made = 0
    last: _FakeRun | None = None

    def __init__(self, **kwargs):
        _FakeRun.made += 1
        _FakeRun.last = self
        self.id = kwargs.get("id") or f"fake{_FakeRun.made}"
        self.name = kwargs.get("name")
        self.config_updates: list[dict] = []
        self.config = SimpleNamespace(
            update=lambda d, allow_val_change=False: self.config_updates.append(d)
        )

    def finish(self, exit_code=None):
        pass


def test_online_resume_continues_the_same_run_id(wandb_env, tmp_path, monkeypatch):
    import wandb

    calls = []

    def fake_init(**kwargs):
        calls.append(kwargs)
        return _FakeRun(**kwargs)

    monkeypatch.setattr(wandb, "init", fake_init)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)  # never used: wandb.init is fake
    run_dir = tmp_path / "job"
    first = WandbLogger(mode="online", group="g", name="dual-n512-samples")
    first.start({"a": 1}, run_dir, resumed_from_step=0)
    first.finish()
    assert calls[0]["mode"] == "online" and "resume" not in calls[0]
    assert calls[0]["reinit"] == "create_new" and calls[0]["dir"] == str(run_dir)

    again = WandbLogger(mode="online", group="g", name="dual-n512-samples")
    again.start({"a": 1}, run_dir, resumed_from_step=300)
    again.finish()
    assert calls[1]["id"] == first_id(run_dir) and calls[1]["resume"] == "allow"
    assert calls[1]["name"] == "dual-n512-samples" and calls[1]["group"] == "g"
    state = json.loads((run_dir / STATE_FILE).read_text())
    assert len(state["runs"]) == 1  # still one run
    assert again.run is None and _FakeRun.last.config_updates == [{"resumed_from_step": 300}]


def first_id(run_dir: Path) -> str:
    return json.loads((run_dir / STATE_FILE).read_text())["runs"][0]["id"]


def test_online_start_failure_falls_back_to_offline(wandb_env, tmp_path, monkeypatch):
    import wandb

    calls = []

    def flaky_init(**kwargs):
        calls.append(kwargs)
        if kwargs["mode"] == "online":
            raise wandb.errors.CommError("network is unreachable")
        return _FakeRun(**kwargs)

    monkeypatch.setattr(wandb, "init", flaky_init)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)  # never used: wandb.init is fake
    logger = WandbLogger(mode="online", name="n")
    with pytest.warns(UserWarning, match="logging offline"):
        logger.start({}, tmp_path / "job", resumed_from_step=0)
    assert [c["mode"] for c in calls] == ["online", "offline"]
    assert logger.resolved_mode == "offline"
    logger.finish()

    strict = WandbLogger(mode="online", fallback_offline=False)
    with pytest.raises(wandb.errors.CommError):
        strict.start({}, tmp_path / "job2", resumed_from_step=0)


def test_explicit_online_without_a_key_goes_offline_or_fails(wandb_env, tmp_path, monkeypatch):
    import wandb

    calls = []
    monkeypatch.setattr(wandb, "init", lambda **kw: calls.append(kw) or _FakeRun(**kw))
    logger = WandbLogger(mode="online")
    with pytest.warns(UserWarning, match="no API key"):
        logger.start({}, tmp_path / "a", resumed_from_step=0)
    assert [c["mode"] for c in calls] == ["offline"]  # wandb never saw "online"
    with pytest.raises(RuntimeError, match="no W&B API key"):
        WandbLogger(mode="online", fallback_offline=False).start({}, tmp_path / "b", 0)


# -- the Hydra config: one run per multirun job, grouped by the sweep ---------------------

_TRAIN_YAML = """
defaults:
  - quantizer: vq
  - dataset: samples
  - logger: wandb
  - _self_
codebook:
  size: 512
seed: 0
logger:
  settings: {settings}
"""


def test_yaml_in_a_multirun_gives_one_run_per_job_grouped_by_sweep(
    wandb_records, wandb_env, tmp_path, hydra_sweep_runner
):
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    conf = tmp_path / "conf"
    for group, option in (("quantizer", "vq"), ("quantizer", "dual"), ("dataset", "samples")):
        (conf / group).mkdir(parents=True, exist_ok=True)
        (conf / group / f"{option}.yaml").write_text(f"name: {option}\n")
    (conf / "train.yaml").write_text(_TRAIN_YAML.format(settings=json.dumps(FAST)))

    def task(cfg):
        logger = instantiate(cfg.logger)
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        logger.start(OmegaConf.to_container(cfg, resolve=True), run_dir, resumed_from_step=0)
        logger.log_metrics({"train/loss": float(cfg.codebook.size)}, step=1)
        logger.finish()
        return run_dir

    sweep_dir = tmp_path / "multirun"
    with hydra_sweep_runner(
        calling_file=__file__,
        calling_module=None,
        task_function=task,
        config_path=str(conf),
        config_name="train",
        overrides=[
            "quantizer=vq,dual",
            "codebook.size=512,1024",
            "seed=0,1",
            f"hydra.searchpath=[file://{REPO / 'conf'}]",
            "hydra.job.chdir=false",
        ],
        temp_dir=sweep_dir,
    ) as sweep:
        # Read inside the block: the runner deletes the sweep dir on exit.
        run_dirs = [job.return_value for job in sweep.returns[0]]
        runs = [
            wandb_records.read_finished(p) for d in run_dirs for p in wandb_records.find_runs(d)
        ]
    assert len(runs) == 8 and len({r.run_id for r in runs}) == 8
    assert {r.group for r in runs} == {str(sweep_dir)}
    rows = ["dual-n1024", "dual-n512", "vq-n1024", "vq-n512"]
    assert sorted(r.name for r in runs) == [f"{j}-samples-s{s}" for j in rows for s in (0, 1)]
    # the seeds of a configuration share its job type (a dashboard's mean and band per row)
    assert sorted(r.job_type for r in runs) == sorted(rows * 2)
    for r in runs:
        assert r.job_type == r.name.rsplit("-", 2)[0]
        assert r.job_type.split("-")[0] == r.config["quantizer"]["name"]
        assert r.name.endswith(f"-s{r.config['seed']}")
        assert r.series("train/loss") == [(1, float(r.config["codebook"]["size"]))]


# -- no key, no WANDB_MODE, no terminal input: offline, no prompt, no hang ---------------

# Three starts in one child (one torch import): stdin a terminal (where wandb would show
# its login menu and wait forever), explicit online without a key on that terminal, then
# stdin closed (a batch job). Each must go offline straight away.
_CHILD = textwrap.dedent(
    """
    import os, sys, warnings
    from pathlib import Path
    from dcvq.logger.wandb import WandbLogger
    assert sys.stdin.isatty()
    warnings.simplefilter("ignore")
    for i, mode in enumerate([None, "online", None]):
        if i == 2:
            sys.stdin.close()
            os.close(0)
        logger = WandbLogger(mode=mode, settings={settings!r})
        logger.start({{"a": i}}, Path(sys.argv[1]) / str(i), resumed_from_step=0)
        logger.log_metrics({{"train/loss": float(i)}}, step=1)
        logger.finish()
        print("MODE", i, logger.resolved_mode, flush=True)
    """
)


def test_without_a_key_it_never_prompts(wandb_records, tmp_path, monkeypatch):
    _isolate(monkeypatch, tmp_path / "home")
    (tmp_path / "home").mkdir()
    monkeypatch.delenv("WANDB_SILENT")  # show whatever wandb would print
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run_dir = tmp_path / "job"
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(settings=FAST), str(run_dir)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 90
    try:
        # Drain the terminal until the child exits (EIO); a prompt would stall it here.
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
        else:
            pytest.fail(f"child blocked; its terminal shows: {out.decode(errors='replace')}")
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "Enter your choice" not in text and "API key" not in text
    for i in range(3):
        assert f"MODE {i} offline" in text
        (path,) = wandb_records.find_runs(run_dir / str(i))
        assert wandb_records.read_finished(path).series("train/loss") == [(1, float(i))]
