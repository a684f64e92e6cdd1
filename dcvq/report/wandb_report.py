"""``--wandb``: the report as one wandb run in the sweep's group (job type ``report``),
beside the sweep's training runs: summary.csv and paired.csv as tables, the verdicts as a
table (claim, verdict, evidence) and the figures as images. Through wandb's public API
only, offline-first as ``dcvq.logger.wandb`` is: ``WANDB_MODE`` when set, else online only
with an API key, and never a prompt."""

from __future__ import annotations

import csv
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dcvq.logger.wandb import has_api_key, resolve_mode
from dcvq.report.collect import Run
from dcvq.report.verdicts import Verdict

JOB_TYPE = "report"
#: a short run: no system-stats sampler, console capture or code and requirements upload
SETTINGS = {"x_disable_stats": True, "console": "off", "save_code": False}


def sweep_group(runs: Sequence[Run]) -> str | None:
    """The group the sweep's training runs logged to (``Run.wandb_group``: as
    ``dcvq.logger.wandb`` derives it); the most common one across several sweeps."""
    groups = Counter(r.wandb_group for r in runs)
    return groups.most_common(1)[0][0] if groups else None


def _setting(runs: Sequence[Run], key: str) -> str | None:
    found = [r.setting(key) for r in runs]
    found = [v for v in found if isinstance(v, str) and v]
    return Counter(found).most_common(1)[0][0] if found else None


def _number(text: str) -> Any:
    """A CSV cell as wandb should chart it: a number where it is one."""
    try:
        return float(text) if text not in ("", "nan") else None
    except ValueError:
        return text


def csv_table(path: Path) -> Any:
    """A CSV file as a ``wandb.Table`` (numbers as numbers)."""
    import wandb

    with open(path, newline="") as f:
        reader = csv.reader(f)
        columns = next(reader, [])
        data = [[_number(v) for v in row] for row in reader]
    return wandb.Table(columns=columns, data=data)


def verdict_table(verdicts: Sequence[Verdict]) -> Any:
    """``claim, verdict, evidence`` per claim (the evidence one line per pair)."""
    import wandb

    rows = []
    for v in verdicts:
        outcome = v.shown.replace("**", "")
        rows.append([v.claim, outcome, "\n".join(v.evidence)])
    return wandb.Table(columns=["claim", "verdict", "evidence"], data=rows)


def log_report(
    runs: Sequence[Run],
    out: Path,
    tables: dict[str, Path],
    verdicts: Sequence[Verdict],
    figures: Sequence[Path],
    config: dict[str, Any],
    group: str | None = None,
    project: str | None = None,
) -> Path | None:
    """Log the report as one wandb run (files under ``out/wandb``); returns the run's
    directory, None when wandb is disabled (``WANDB_MODE=disabled``). ``group`` and
    ``project`` default to the sweep's (its runs' ``logger.*``, else dcvq's defaults)."""
    mode = resolve_mode(None)
    if mode in ("online", "shared") and not has_api_key():
        warnings.warn(
            "wandb mode online but no API key found; logging the report offline instead"
            " (`wandb login`, then `wandb sync` it)",
            stacklevel=2,
        )
        mode = "offline"
    if mode == "disabled":
        return None
    import wandb

    group = group or sweep_group(runs)
    name = f"report-{Path(group).name}" if group else "report"
    out.mkdir(parents=True, exist_ok=True)
    init = {
        "project": project or _setting(runs, "logger.project") or "dcvq",
        "entity": _setting(runs, "logger.entity"),
        "group": group,
        "job_type": JOB_TYPE,
        "name": name,
        "dir": str(out),
        "config": config,
        "settings": wandb.Settings(**SETTINGS),
    }
    try:
        run = wandb.init(mode=mode, reinit="create_new", **init)
    except Exception as err:  # wandb raises several types (CommError, UsageError, ...)
        if mode == "offline":
            raise
        warnings.warn(
            f"wandb online start failed ({type(err).__name__}: {err}); logging the report"
            " offline instead (wandb sync later)",
            stacklevel=2,
        )
        run = wandb.init(mode="offline", reinit="create_new", **init)
    try:
        row: dict[str, Any] = {name: csv_table(path) for name, path in tables.items()}
        row["verdicts"] = verdict_table(verdicts)
        row |= {f"figures/{p.stem}": wandb.Image(str(p), caption=p.name) for p in figures}
        run.log(row)
    finally:
        run.finish()
    return Path(run.dir).parent
