"""Weights & Biases dashboard logger (``logger=wandb``).

One wandb run per training job, filed under the job's Hydra run dir
(``<run_dir>/wandb/...``). What it relies on, and why (wandb 0.2x/0.3x behaviour):

* **Mode.** ``mode`` from config, else ``WANDB_MODE``, else ``online`` only when an API key
  is configured (``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE`` or a netrc entry for the
  W&B host) and ``offline`` otherwise: a fresh machine never prompts for a key and never
  blocks; ``wandb sync <run_dir>/wandb/offline-run-*`` uploads later. An explicit
  ``online`` without a key, or an online start that fails (a compute node without
  internet), falls back to offline with a warning unless ``fallback_offline=false``.
* **One run per job.** In one process (a Hydra multirun with the basic launcher), a second
  ``wandb.init`` by default silently returns the first run, so every job would log into
  job 0's run. Runs are created with ``reinit="create_new"`` and logged through the run
  object, never through the ``wandb.log`` global.
* **Resume.** The run id is kept in ``<run_dir>/wandb_run.json``. A requeued job (same run
  dir) continues that run id online (``resume="allow"``). wandb cannot resume an offline
  run, so offline it starts a new run in the same group named
  ``<first run's name>-resume@<step>``, with ``resumed_from_step`` and ``continues_run_id``
  in its config.
* **Finish.** ``Run.finish()``, wandb's public API, and nothing else (dcvq does not read
  wandb's private run-file format). wandb's service may write the last block of an offline
  run file just after it returns; wandb's exit hook flushes the rest when the process
  ends, before ``wandb sync`` would read it.
* **Histograms.** ``wandb.Histogram`` takes at most 512 bins: a codebook of N > 512 codes
  is shown as a histogram over code index with adjacent codes summed into <= 512 bins,
  plus a sorted usage curve backed by a table of all N counts.
"""

from __future__ import annotations

import json
import math
import netrc
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
from torch import Tensor

from dcvq.logger.base import RunLogger

STATE_FILE = "wandb_run.json"
MAX_HISTOGRAM_BINS = 512  # wandb.Histogram refuses more
_MODES = ("online", "offline", "disabled", "shared")
_MODE_ALIASES = {"dryrun": "offline", "run": "online"}
_ONLINE = ("online", "shared")
_DEFAULT_HOST = "https://api.wandb.ai"


def has_api_key() -> bool:
    """Whether wandb would find credentials without asking: env vars or a netrc entry.

    Checked by hand (not through wandb's private auth module, which moves between
    releases) and never raising: a broken netrc counts as no key.
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or _DEFAULT_HOST).hostname
    candidates = [os.environ.get("NETRC"), "~/.netrc", "~/_netrc"]
    for candidate in candidates:
        if not candidate:
            continue
        path = Path(candidate).expanduser()
        if not path.is_file():
            continue
        try:
            entry = netrc.netrc(str(path)).authenticators(host or "")
        except (netrc.NetrcParseError, OSError):
            return False
        return bool(entry and entry[2])
    return False


def resolve_mode(mode: str | None = None) -> str:
    """``mode`` if given, else ``WANDB_MODE``, else online with an API key, else offline.

    An empty string counts as unset (``WANDB_MODE=""`` would crash ``wandb.init``).
    """
    chosen = (mode or "").strip().lower() or os.environ.get("WANDB_MODE", "").strip().lower()
    if not chosen:
        return "online" if has_api_key() else "offline"
    chosen = _MODE_ALIASES.get(chosen, chosen)
    if chosen not in _MODES:
        raise ValueError(f"logger.mode must be one of {_MODES} or null, got {mode!r}")
    return chosen


def usage_histogram_bins(
    counts: np.ndarray, max_bins: int = MAX_HISTOGRAM_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """Per-code counts summed over adjacent codes into at most ``max_bins`` bins.

    Returns ``(values, edges)`` for ``wandb.Histogram(np_histogram=...)``: the x axis is the
    code index (edges ``0, g, 2g, ..., N``), so every code of an N-code book is covered
    whatever N; ``g = ceil(N / max_bins)`` codes share a bin (1 when N <= max_bins).
    """
    counts = np.asarray(counts).reshape(-1)
    n = counts.size
    if n == 0:
        raise ValueError("empty code-count vector")
    group = math.ceil(n / max_bins)
    nbins = math.ceil(n / group)
    padded = np.zeros(nbins * group, dtype=np.int64)
    padded[:n] = counts
    values = padded.reshape(nbins, group).sum(axis=1)
    edges = np.minimum(np.arange(nbins + 1) * group, n).astype(np.float64)
    return values, edges


def _scalar(value: Any) -> Any:
    """Plain Python numbers for wandb (0-d tensors and numpy scalars included)."""
    if isinstance(value, Tensor):
        return value.detach().cpu().item()
    if isinstance(value, np.generic):
        return value.item()
    return value


class WandbLogger(RunLogger):
    """Mirrors metrics, codebook usage and images to a wandb run (rank 0 only).

    ``group``/``name``/``job_type`` normally come from ``conf/logger/wandb.yaml``
    interpolations. With ``group`` unset the run is grouped by its sweep (``sweep_dir``,
    when ``job_num`` says this job belongs to a multirun) or else by its own run dir, so a
    run and its offline continuations always share a group.
    """

    def __init__(
        self,
        project: str = "dcvq",
        entity: str | None = None,
        mode: str | None = None,
        group: str | None = None,
        job_type: str | None = None,
        name: str | None = None,
        tags: Sequence[str] = (),
        dir: str | Path | None = None,
        sweep_dir: str | Path | None = None,
        job_num: int | None = None,
        settings: Mapping[str, Any] | None = None,
        fallback_offline: bool = True,
    ) -> None:
        self.project = project
        self.entity = entity
        self.mode = mode
        self.group = group
        self.job_type = job_type
        self.name = name
        self.tags = [str(t) for t in tags]
        self.dir = Path(dir) if dir else None
        self.sweep_dir = sweep_dir
        self.job_num = job_num
        self.settings = dict(settings or {})
        self.fallback_offline = fallback_offline
        self.run: Any = None  # the wandb Run; None before start, after finish, or disabled
        self.resolved_mode: str | None = None
        self.discarded_steps = 0  # by rollbacks (set_discarded_steps)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, config: dict[str, Any], run_dir: Path, resumed_from_step: int) -> None:
        """Create (or, online, continue) this job's run; see the module docstring."""
        self.finish()  # a start without finish (misuse) must not leave a run open
        run_dir = Path(run_dir)
        mode = resolve_mode(self.mode)
        if mode in _ONLINE and not has_api_key():
            # wandb would ask for a key on a terminal and wait forever (a job blocked on
            # a prompt nobody sees); only explicit online settings can get here.
            if not self.fallback_offline:
                raise RuntimeError(
                    "logger.mode=online but no W&B API key found (WANDB_API_KEY, "
                    "WANDB_IDENTITY_TOKEN_FILE or ~/.netrc): run `wandb login` or use "
                    "logger.mode=offline"
                )
            warnings.warn(
                "wandb mode online but no API key found; logging offline instead "
                "(`wandb login`, then `wandb sync` the offline run)",
                stacklevel=2,
            )
            mode = "offline"
        self.resolved_mode = mode
        if mode == "disabled":
            # Nothing at all: no wandb dir, no state file, no wandb service process.
            return

        import wandb

        # wandb validates WANDB_MODE from the environment even when mode is passed
        # explicitly; an empty value would crash init, and it means "unset" here too.
        if os.environ.get("WANDB_MODE", None) == "":
            del os.environ["WANDB_MODE"]

        state = _read_state(run_dir)
        previous = state["runs"][-1] if state and state.get("runs") else None
        continuing = previous is not None or resumed_from_step > 0
        group = state.get("group") if state else self._default_group(run_dir)
        base_name = (state.get("base_name") if state else None) or self.name
        init: dict[str, Any] = {
            "project": self.project,
            "entity": self.entity,
            "group": group,
            "job_type": self.job_type,
            "tags": self.tags or None,
            "dir": str(self.dir or run_dir),
            "config": config,
        }
        extra: dict[str, Any] = {"resumed_from_step": int(resumed_from_step)}
        # The name a continuation gets when it has to be a new run (offline).
        root = base_name or (state["runs"][0]["id"] if previous else run_dir.name)
        continue_name = f"{root}-resume@{int(resumed_from_step)}" if continuing else self.name
        if previous and previous.get("mode") in _ONLINE and mode in _ONLINE:
            init.update(id=previous["id"], resume="allow", name=previous.get("name"))
        else:
            init["name"] = continue_name
            if previous:
                extra["continues_run_id"] = state["runs"][0]["id"]
        (self.dir or run_dir).mkdir(parents=True, exist_ok=True)

        run, mode = self._init(wandb, init, mode, continue_name)
        self.run, self.resolved_mode = run, mode
        # A resumed online run already holds resumed_from_step from its first start.
        run.config.update(extra, allow_val_change=True)

        runs = list(state.get("runs", [])) if state else []
        if not (previous and previous.get("id") == run.id):
            runs.append({"id": run.id, "mode": mode, "name": run.name or init.get("name")})
        _write_state(
            run_dir,
            {"group": group, "base_name": base_name or run.name or runs[0]["id"], "runs": runs},
        )

    def _init(
        self, wandb: Any, init: dict[str, Any], mode: str, continue_name: str | None
    ) -> tuple[Any, str]:
        settings = dict(self.settings)
        try:
            return wandb.init(
                mode=mode, reinit=_reinit_value(wandb), settings=wandb.Settings(**settings), **init
            ), mode
        except Exception as err:  # wandb raises several types (CommError, UsageError, ...)
            if mode not in _ONLINE or not self.fallback_offline:
                raise
            warnings.warn(
                f"wandb online start failed ({type(err).__name__}: {err}); logging offline "
                f"instead (wandb sync later). Set logger.fallback_offline=false to fail.",
                stacklevel=3,
            )
            if "resume" in init:  # it was to continue an online run: now a new one
                init = {k: v for k, v in init.items() if k not in ("id", "resume")}
                init["name"] = continue_name
            return wandb.init(
                mode="offline",
                reinit=_reinit_value(wandb),
                settings=wandb.Settings(**settings),
                **init,
            ), "offline"

    def _default_group(self, run_dir: Path) -> str | None:
        if self.group:
            return str(self.group)
        if self.job_num is not None and self.sweep_dir:
            return str(self.sweep_dir)
        try:
            return str(run_dir.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(run_dir)

    def finish(self) -> None:
        """Close the run (wandb's ``Run.finish()``). Safe to call twice.

        Called from the trainer's ``finally``: when an exception is on its way out (a
        crash, not a clean ``sys.exit(0)``), the run is closed with exit code 1 so the
        dashboard shows it failed rather than finished.
        """
        run, self.run = self.run, None
        if run is None:
            return
        run.finish(exit_code=_exit_code(sys.exc_info()[1]))

    # -- logging -----------------------------------------------------------------------

    def set_discarded_steps(self, steps: int) -> None:
        """wandb drops rows logged at a step below one already logged: after a rollback,
        rows go to ``step + steps`` (the optimizer steps taken in all), with the training
        step itself as ``trainer/step``."""
        self.discarded_steps = int(steps)

    def _step(self, step: int) -> int:
        return int(step) + self.discarded_steps

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Scalars into the run history at ``step`` (same-step calls merge into one row)."""
        if self.run is None:
            return
        row = {k: _scalar(v) for k, v in metrics.items()}
        if self.discarded_steps:
            row["trainer/step"] = int(step)
        self.run.log(row, step=self._step(step))

    def log_usage(self, counts: dict[str, Tensor], step: int) -> None:
        """Per codebook: ``usage/<name>_hist`` (counts by code index, <= 512 bins) and
        ``usage/<name>_curve`` (code frequencies sorted high to low; its table
        ``usage/<name>_curve_table`` lists every code's count)."""
        if self.run is None:
            return
        import wandb

        row: dict[str, Any] = {}
        for name, vec in counts.items():
            c = torch.as_tensor(vec).detach().cpu().reshape(-1).to(torch.int64).numpy()
            values, edges = usage_histogram_bins(c)
            row[f"usage/{name}_hist"] = wandb.Histogram(np_histogram=(values, edges))
            total = max(int(c.sum()), 1)
            order = np.argsort(-c, kind="stable")
            table = wandb.Table(
                columns=["rank", "code", "count", "fraction"],
                data=[[r, int(k), int(c[k]), float(c[k]) / total] for r, k in enumerate(order)],
            )
            row[f"usage/{name}_curve"] = wandb.plot.line(
                table, "rank", "fraction", title=f"{name} codebook: code frequency, sorted"
            )
        self.run.log(row, step=self._step(step))

    def log_image(self, key: str, path: Path, step: int) -> None:
        """An image file (e.g. a reconstruction grid) as ``wandb.Image`` at ``step``."""
        if self.run is None:
            return
        import wandb

        self.run.log({key: wandb.Image(str(path), caption=Path(path).name)}, step=self._step(step))


def _exit_code(error: BaseException | None) -> int:
    if error is None:
        return 0
    if isinstance(error, SystemExit):
        return error.code if isinstance(error.code, int) else int(error.code is not None)
    return 1


def _reinit_value(wandb: Any) -> Any:
    """``create_new`` where wandb knows it (>= 0.19.10); older wandb only has ``True``,
    which finishes the previous run and starts a new one, also fine for sequential jobs."""
    fields = getattr(wandb.Settings, "model_fields", {})
    annotation = str(getattr(fields.get("reinit"), "annotation", ""))
    return "create_new" if "create_new" in annotation else True


def _read_state(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        # A torn write from a killed job: start afresh rather than crash the resume.
        return None


def _write_state(run_dir: Path, state: dict[str, Any]) -> None:
    # Atomic replace: the job may be killed at any moment (preemption).
    tmp = run_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(tmp, run_dir / STATE_FILE)
