"""A sweep directory as :class:`Run` objects: one per Hydra job dir, named as the paper
names it. Reading never raises for a damaged or unfinished job; it is listed as missing."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: a run's codebooks in display order (global left, local right); others after these
CODEBOOK_ORDER = ("global", "local", "codebook")

# Hydra option name -> the paper's name for it
DATASET_NAMES = {
    "ade20k": "ADE20K",
    "celebahq": "CelebA-HQ",
    "coco": "MS-COCO",
    "cub200": "CUB-200",
    "samples": "samples",
    "sampleimages": "samples",
    "imagefolder": "image folder",
}
BASELINE_NAMES = {"vqvae": "VQ-VAE", "gumbel": "Gumbel-VQ", "cvq": "CVQ"}
#: without a ``baseline`` choice, these quantizer classes still get the paper's names
QUANTIZER_NAMES = {"GumbelQuantizer": "Gumbel-VQ", "CVQQuantizer": "CVQ"}
#: the ``conf/quantizer/`` options the paper has rows for. Their rows keep the paper's names,
#: read from the config (VQ-GAN, Dual Codebook T-128/S-128, ...); any other option names its
#: row after itself, so a new quantizer needs no entry anywhere.
PAPER_QUANTIZERS = frozenset({"vq", "s128_s128", "t192_s64", "t64_s192", "t128_s128"})
DUAL = "Dual Codebook"


@dataclass
class Run:
    """One job directory of a sweep."""

    path: Path
    rel: str  # relative to the sweep dir, as printed
    table: str | None
    dataset: str
    model: str
    global_: str
    local: str
    codebook_size: int | None
    results: dict[str, Any] | None = None  # eval.json
    step: int | None = None
    sample: Path | None = None  # the last reconstruction grid
    problem: str | None = None  # why there are no results
    choices: dict[str, Any] = field(default_factory=dict)  # hydra.runtime.choices
    config: DictConfig | None = None  # .hydra/config.yaml, unresolved

    @property
    def ok(self) -> bool:
        return self.results is not None

    @property
    def key(self) -> tuple[str, str, str, str, int | None]:
        return (self.dataset, self.model, self.global_, self.local, self.codebook_size)

    @property
    def name(self) -> str:
        """``T-128/S-128`` for the dual quantizers, the model's name otherwise."""
        return f"{self.global_}/{self.local}" if self.global_ else self.model

    @property
    def title(self) -> str:
        """``Dual Codebook T-128/S-128`` or ``VQ-GAN``."""
        return f"{self.model} {self.name}" if self.global_ else self.model

    @property
    def label(self) -> str:
        size = f", {self.codebook_size} codes" if self.codebook_size else ""
        return f"{self.title}{size}"

    @property
    def codebooks(self) -> dict[str, dict[str, Any]]:
        """eval.json's per-codebook statistics in :data:`CODEBOOK_ORDER`."""
        books = (self.results or {}).get("codebooks") or {}
        names = [n for n in CODEBOOK_ORDER if n in books]
        return {n: books[n] for n in names + [n for n in books if n not in names]}


def table_of_experiment(name: str | None) -> str | None:
    """``table1_coco`` -> ``1``, ``table2`` -> ``2``, ``tableS1_cub`` -> ``S1``."""
    m = re.match(r"table(S?\d+)(?:_|$)", name or "", flags=re.IGNORECASE)
    return m.group(1).upper() if m else None


def _select(cfg: DictConfig, key: str) -> Any:
    # Hydra saves the config unresolved; keys this module needs are plain values, and an
    # interpolation that cannot resolve here (e.g. ${hydra:...}) reads as None.
    try:
        return OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
    except Exception:  # a damaged config must not stop the report
        return None


def describe(cfg: DictConfig, choices: dict[str, Any]) -> tuple[str, str, str, int | None]:
    """``(model, global, local, codebook size)`` named as the paper names them.

    The paper's quantizer options and baselines get the paper's names; any other
    ``quantizer`` or ``baseline`` option is named after the option itself.
    """
    size = _select(cfg, "codebook.size")
    if not isinstance(size, int):
        size = _select(cfg, "quantizer.codebook_size")
    size = size if isinstance(size, int) else None
    baseline = choices.get("baseline")
    if baseline:
        return BASELINE_NAMES.get(str(baseline), str(baseline)), "", "", size
    g = loc = ""
    if _select(cfg, "quantizer.global_dim") is not None:
        kind = "T" if _select(cfg, "quantizer.global_transformer") else "S"
        g = f"{kind}-{_select(cfg, 'quantizer.global_dim')}"
        loc = f"S-{_select(cfg, 'quantizer.local_dim')}"
    option = choices.get("quantizer")
    if option and str(option) not in PAPER_QUANTIZERS:
        return str(option), g, loc, size
    if g:
        return DUAL, g, loc, size
    target = str(_select(cfg, "quantizer._target_") or "").rsplit(".", 1)[-1]
    if target in QUANTIZER_NAMES:
        return QUANTIZER_NAMES[target], "", "", size
    # plain nearest-neighbour VQ: VQ-VAE when trained without the GAN and perceptual terms
    no_gan = _select(cfg, "loss.disc_factor") == 0 or _select(cfg, "loss.disc_weight") == 0
    if no_gan and _select(cfg, "loss.perceptual_weight") == 0:
        return "VQ-VAE", "", "", size
    return "VQ-GAN", "", "", size


def dataset_name(cfg: DictConfig, choices: dict[str, Any]) -> str:
    """The paper's name of the dataset option (``coco`` -> ``MS-COCO``), else the option."""
    choice = choices.get("dataset")
    if not choice:  # not run through Hydra's defaults: use the dataset class
        choice = str(_select(cfg, "dataset._target_") or "unknown").rsplit(".", 1)[-1]
    return DATASET_NAMES.get(str(choice).lower(), str(choice))


def _last_json_line(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 65536))  # the tail is enough for one line
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    for line in reversed(lines):
        try:
            return json.loads(line)
        except ValueError:
            continue  # a line cut by the seek or by a killed writer
    return None


def last_sample(job: Path) -> Path | None:
    """The last reconstruction grid (``samples/step_XXXXXXX.png`` sorts by step)."""
    grids = sorted((job / "samples").glob("*.png"))
    return grids[-1] if grids else None


def read_run(job: Path, sweep_dir: Path, table: str | None = None) -> Run:
    """One job dir -> :class:`Run`; never raises for a damaged or unfinished job."""
    rel = str(job.relative_to(sweep_dir)) if job != sweep_dir else "."
    choices: dict[str, Any] = {}
    hydra_file = job / ".hydra" / "hydra.yaml"
    problem = None
    try:
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        if hydra_file.is_file():
            node = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.runtime.choices")
            if node is not None:
                choices = OmegaConf.to_container(node, resolve=False)  # type: ignore[assignment]
    except Exception as e:  # a damaged job is listed as missing, never a crash
        cfg, problem = OmegaConf.create({}), f"unreadable config: {e}"
    model, g, loc, size = describe(cfg, choices)  # type: ignore[arg-type]
    run = Run(
        path=job,
        rel=rel,
        table=table or table_of_experiment(choices.get("experiment")),
        dataset=dataset_name(cfg, choices),  # type: ignore[arg-type]
        model=model,
        global_=g,
        local=loc,
        codebook_size=size,
        sample=last_sample(job),
        choices=choices,
        config=cfg,  # type: ignore[arg-type]
    )
    eval_file = job / "eval.json"
    if problem is None and eval_file.is_file():
        try:
            run.results = json.loads(eval_file.read_text())
            run.step = run.results.get("step")
        except ValueError as e:
            problem = f"eval.json unreadable: {e}"
    if run.results is None:
        # train.jsonl is written every few steps, metrics.jsonl at each evaluation
        steps = [
            (_last_json_line(job / f) or {}).get("step") for f in ("train.jsonl", "metrics.jsonl")
        ]
        run.step = max((s for s in steps if isinstance(s, int)), default=None)
        ckpt = (job / "checkpoints" / "last.pt").is_file()
        where = f"last logged step {run.step}" if run.step is not None else "nothing logged"
        run.problem = problem or (
            f"no eval.json ({where}{', checkpoint present' if ckpt else ''}): "
            "still running, failed or preempted"
        )
    return run


def collect(sweep_dir: str | Path, table: str | None = None) -> list[Run]:
    """Every job dir (``.hydra/config.yaml``) at any depth below ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    jobs = sorted(
        {p.parent.parent for p in sweep_dir.rglob("config.yaml") if p.parent.name == ".hydra"}
    )
    return [read_run(job, sweep_dir, table) for job in jobs]
