"""The report's CSV files: ``report.csv`` (one line per run), ``summary.csv`` (one per
configuration, over its seeds), ``paired.csv`` (one per paired comparison and metric) and
``per_photo.csv`` (each comparison's mean difference per source photo)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dcvq.report.budget import budget_check
from dcvq.report.collect import CODEBOOK_ORDER, TEST, VAL, Run
from dcvq.report.paper import METRICS, PaperRow, match
from dcvq.report.rate import bits_per_image, prior_bits_per_image
from dcvq.report.rows import Configuration, show
from dcvq.report.sections import Section
from dcvq.report.stats import (
    Comparison,
    config_gain_last_fifth,
    estimate,
    finite,
    seed_values,
)
from dcvq.report.verdicts import RECONSTRUCTION

EXTRA_METRICS = ("ssim", "lpips")


def _row_fields(run: Run) -> dict[str, Any]:
    """What names a run's row in the CSV files (field order is the writer's)."""
    return {
        "table": run.table or "",
        "dataset": run.dataset,
        "model": run.model,
        "global": run.global_,
        "local": run.local,
        "codebook_size": run.codebook_size or "",
    }


def _cell(value: Any) -> Any:
    return "" if value is None else value


def _roles(configs: Sequence[Configuration]) -> dict[int, tuple[str, str]]:
    """``id(run) -> (role, row label)``: ``seed`` of a row, ``budget check``, a
    selection or other run (its reason), ``duplicate``."""
    out: dict[int, tuple[str, str]] = {}
    for c in configs:
        out |= {id(r): ("seed", c.label) for r in c.runs}
        out |= {id(r): ("budget check", c.label) for r in c.budget_runs}
        out |= {id(r): (why, c.label) for r, why in c.others}
        out |= {id(r): (f"duplicate of {kept.rel}", c.label) for r, kept in c.duplicates}
    return out


def write_csv(
    path: Path,
    runs: Sequence[Run],
    paper: Sequence[PaperRow],
    configs: Sequence[Configuration] = (),
) -> None:
    """report.csv: one line per run (finished or not, duplicates too), with its role in
    the report, where and how it ran, its val and test numbers and the paper's beside."""
    books = list(CODEBOOK_ORDER)
    for run in runs:
        books += [n for n in run.codebooks if n not in books]
    has_test = any(r.results_on(TEST) for r in runs)
    fields = ["table", "dataset", "model", "global", "local", "codebook_size", "status"]
    fields += ["row", "role", "seed", "max_steps", *METRICS, *EXTRA_METRICS]
    fields += [f"test_{m}" for m in (*METRICS, *EXTRA_METRICS)] if has_test else []
    for n in books:
        fields += [f"usage_{n}", f"distinct_{n}", f"dead_{n}", f"perplexity_{n}"]
    fields += ["collapsed", "bits_per_image", "prior_bits_per_image"]
    fields += [f"paper_{m}" for m in METRICS]
    fields += ["protocol", "split", "test_split", "n_images", "step"]
    fields += ["device", "device_type", "torch", "precision", "run"]
    roles = _roles(configs)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for run in runs:
            res, test = run.results or {}, run.results_on(TEST) or {}
            row = match(run, paper)
            role, label = roles.get(id(run), ("", ""))
            rec: dict[str, Any] = _row_fields(run) | {
                "status": "ok" if run.ok else "missing",
                "row": label,
                "role": role,
                "seed": _cell(run.seed),
                "max_steps": _cell(run.max_steps),
                "collapsed": " ".join(run.collapsed),
                "bits_per_image": _cell(bits_per_image(run)),
                "prior_bits_per_image": _cell(prior_bits_per_image(run)),
                "protocol": res.get("protocol", ""),
                "split": res.get("split", ""),
                "test_split": test.get("split", ""),
                "n_images": res.get("n_images", ""),
                "step": _cell(run.step),
                "device": run.device,
                "device_type": run.device_type,
                "torch": run.torch_version,
                "precision": run.precision,
                "run": run.rel,
            }
            for m in (*METRICS, *EXTRA_METRICS):
                rec[m] = _cell(res.get(m))
                if has_test:
                    rec[f"test_{m}"] = _cell(test.get(m))
            for n, cb in run.codebooks.items():
                rec |= {
                    f"usage_{n}": cb.get("usage"),
                    f"distinct_{n}": cb.get("distinct_usage", ""),
                    f"dead_{n}": cb.get("dead"),
                    f"perplexity_{n}": cb.get("perplexity"),
                }
            for m in METRICS:
                value = row.metrics.get(m) if row else None
                rec[f"paper_{m}"] = _cell(value)
            w.writerow(rec)


def write_summary(path: Path, sections: Sequence[Section], select: Sequence[str] = ()) -> None:
    """summary.csv: one line per configuration: its labels, seeds, selected value (a
    column per ``--select`` key, and how it was chosen), rate, where it ran, and for each
    metric the mean over seeds on its judged split and the half-width of its 95%
    t-interval (empty for one seed); ``val_psnr`` is on the validation split."""
    configs = [c for s in sections for c in s.configs]
    values = [seed_values(c) for c in configs]
    measured = ["psnr", "l1", "l2", "ssim"]
    measured += [m for m in ("lpips", "fid") if any(m in v for v in values)]
    books = [f"usage_{n}" for n in CODEBOOK_ORDER]
    books += [k for v in values for k in v if k.startswith(("usage_", "distinct_"))]
    prior = list(dict.fromkeys(k for v in values for k in v if k.startswith("prior_")))
    metrics = measured + ["val_psnr"] + list(dict.fromkeys(books)) + ["psnr_gain_last_fifth"]
    metrics += prior + (["prior_bits_per_image"] if prior else [])
    fields = ["table", "dataset", "label", "model", "global", "local", "codebook_size"]
    fields += ["quantizer", "baseline", *select, "selection", "selection_warning"]
    fields += ["bits_per_image", "n_seeds", "seeds", "n_missing", "n_duplicates"]
    fields += ["budget_check_runs", "max_steps", "device", "torch", "precision", "pooled"]
    fields += ["protocol", "judged_on", "split", "n_images", "step"]
    fields += [f"{m}_{k}" for m in metrics for k in ("mean", "ci95")] + ["runs"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for config, vals in zip(configs, values, strict=True):
            rep = config.representative
            res = rep.results_on(config.judged) or {}
            sel = config.selection
            rec: dict[str, Any] = _row_fields(rep) | {
                "label": config.label,
                "quantizer": rep.quantizer,
                "baseline": rep.baseline,
                "selection": sel.describe() if sel is not None else "",
                "selection_warning": (sel.mismatch or "") if sel is not None else "",
                "bits_per_image": _cell(bits_per_image(rep)),
                "n_seeds": len(config.finished),
                "seeds": " ".join("" if s is None else str(s) for s in config.seeds),
                "n_missing": len(config.runs) - len(config.finished),
                "n_duplicates": len(config.duplicates),
                "budget_check_runs": " ".join(r.rel for r in config.budget_runs),
                "max_steps": _cell(config.max_steps),
                "device": " ".join(sorted({d for d, _ in config.devices})),
                "torch": " ".join(sorted({t for _, t in config.devices})),
                "precision": " ".join(sorted({r.precision for r in config.finished})),
                "pooled": "yes" if len(config.devices) > 1 else "",
                "protocol": (rep.results or {}).get("protocol", ""),
                "judged_on": config.judged,
                "split": res.get("split", ""),
                "n_images": res.get("n_images", ""),
                "step": _cell(rep.step),
                "runs": " ".join(r.rel for r in config.runs),
            }
            rec |= {k: show(config.selected.get(k)) for k in select}
            ests = {m: estimate(v) for m, v in vals.items()}
            ests["val_psnr"] = estimate(seed_values(config, VAL).get("psnr", []))
            ests["psnr_gain_last_fifth"] = config_gain_last_fifth(config)
            ests["prior_bits_per_image"] = estimate(
                finite([prior_bits_per_image(r) for r in config.finished])
            )
            for m in metrics:
                est = ests.get(m)
                rec[f"{m}_mean"] = _cell(est.mean if est else None)
                rec[f"{m}_ci95"] = _cell(est.ci95 if est else None)
            w.writerow(rec)


#: paired.csv's columns, one row per (comparison, metric)
PAIRED_FIELDS = (
    "table",
    "dataset",
    "split",
    "row",
    "row_quantizer",
    "row_codebook_size",
    "reference",
    "reference_quantizer",
    "reference_codebook_size",
    "metric",
    "better",
    "n_images",
    "n_sources",
    "n_seeds",
    "n_seeds_reference",
    "row_mean",
    "reference_mean",
    "mean_diff",
    "ci95_low",
    "ci95_high",
    "cluster_low",
    "cluster_high",
    "seeds_low",
    "seeds_high",
    "outcome_images",
    "outcome_cluster",
    "outcome_seeds",
    "outcome",
    "budget_check",
    "device_flag",
    "note",
)


def write_paired(path: Path, comparisons: Sequence[Comparison]) -> None:
    """paired.csv: each paired comparison, one line per metric (``mean_diff`` = row −
    reference; ``better``: which direction is better; the 95% intervals over images
    (``ci95_*``, paired t), over source photos (``cluster_*``) and over seeds
    (``seeds_*``) with each one's outcome; ``outcome``: better / worse when the photo and
    the seed interval agree, else inconclusive); a comparison without numbers gets one
    line with its reason in ``note``."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=PAIRED_FIELDS, lineterminator="\n")
        w.writeheader()
        for c in comparisons:
            a, b = c.config.representative, c.reference.representative
            check = budget_check(c.config, c.reference, RECONSTRUCTION) if c.ok else None
            base = {
                "table": a.table or "",
                "dataset": a.dataset,
                "split": c.config.split or "",
                "row": c.config.label,
                "row_quantizer": a.baseline or a.quantizer,
                "row_codebook_size": a.codebook_size or "",
                "reference": c.reference.label,
                "reference_quantizer": b.baseline or b.quantizer,
                "reference_codebook_size": b.codebook_size or "",
                "n_images": c.n_images,
                "n_sources": c.n_sources,
                "n_seeds": c.n_seeds,
                "n_seeds_reference": c.n_seeds_reference,
                "budget_check": check.status if check is not None else "",
                "device_flag": c.device_flag or "",
                "note": "; ".join([*c.notes, *([c.problem] if c.problem else [])]),
            }
            if not c.ok:
                w.writerow(base)
            for m, p in c.metrics.items():
                cl, s = c.cluster.get(m), c.seeds.get(m)
                w.writerow(
                    base
                    | {
                        "metric": m,
                        "better": "higher" if p.higher_is_better else "lower",
                        "row_mean": p.config_mean,
                        "reference_mean": p.reference_mean,
                        "mean_diff": p.mean_diff,
                        "ci95_low": _cell(p.low),
                        "ci95_high": _cell(p.high),
                        "cluster_low": _cell(cl.low if cl else None),
                        "cluster_high": _cell(cl.high if cl else None),
                        "seeds_low": _cell(s.low if s else None),
                        "seeds_high": _cell(s.high if s else None),
                        "outcome_images": p.outcome,
                        "outcome_cluster": c.cluster_outcome(m),
                        "outcome_seeds": c.seed_outcome(m) or "",
                        "outcome": c.outcome(m),
                    }
                )


PER_PHOTO_FIELDS = (
    "table",
    "dataset",
    "split",
    "row",
    "reference",
    "metric",
    "photo",
    "n_images",
    "mean_diff",
)


def write_per_photo(path: Path, comparisons: Sequence[Comparison]) -> None:
    """per_photo.csv: for each comparison and metric, each source photo's mean paired
    difference (row − reference) over its tiles."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=PER_PHOTO_FIELDS, lineterminator="\n")
        w.writeheader()
        for c in comparisons:
            a = c.config.representative
            for m, means in c.per_source.items():
                for src in means:
                    w.writerow(
                        {
                            "table": a.table or "",
                            "dataset": a.dataset,
                            "split": c.config.split or "",
                            "row": c.config.label,
                            "reference": c.reference.label,
                            "metric": m,
                            "photo": src.source,
                            "n_images": src.n_images,
                            "mean_diff": src.mean_diff,
                        }
                    )
