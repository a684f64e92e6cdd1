"""What dcvq tells Hydra: the schemas (dcvq.config.schema) in its ConfigStore, and the
resolvers the YAML uses (``dcvq.first``, ``dcvq.required``, ``dcvq.run_dir``)."""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from dcvq.config.diff import run_dir_name
from dcvq.config.schema import (
    DATASETS,
    CVQSchema,
    DualSchema,
    EvaluateSchema,
    FSQSchema,
    GumbelSchema,
    LFQSchema,
    LossSchema,
    ModelSchema,
    PriorRunSchema,
    PriorSchema,
    SimVQSchema,
    TrainerSchema,
    TrainSchema,
    VQSchema,
)
from dcvq.errors import ConfigError


def _required(why: str) -> Any:
    raise ConfigError(why)


def register() -> None:
    """Store the schemas in Hydra's ConfigStore and the resolvers (idempotent)."""
    # ${dcvq.first:a,b,...}: the first value that is set, e.g. the baseline's name, else
    # the quantizer option's (run names and wandb job types)
    OmegaConf.register_new_resolver(
        "dcvq.first",
        lambda *xs: next((x for x in xs if x not in (None, "None")), None),
        replace=True,
    )
    # ${dcvq.required:why}: a value the command line must set (a preset that refuses a
    # default, e.g. a study whose rows each choose their own learning rate)
    OmegaConf.register_new_resolver("dcvq.required", _required, replace=True)
    # ${dcvq.run_dir:row,size,${hydra:overrides.task}}: a multirun job's dir by its config
    OmegaConf.register_new_resolver(
        "dcvq.run_dir",
        lambda row, size, overrides: run_dir_name(row, size, list(overrides)),
        replace=True,
    )
    cs = ConfigStore.instance()
    cs.store(group="schema", name="train", node=TrainSchema)
    cs.store(group="schema", name="evaluate", node=EvaluateSchema)
    cs.store(group="schema/model", name="vqgan", node=ModelSchema)
    cs.store(group="schema/quantizer", name="vq", node=VQSchema)
    cs.store(group="schema/quantizer", name="dual", node=DualSchema)
    cs.store(group="schema/quantizer", name="gumbel", node=GumbelSchema)
    cs.store(group="schema/quantizer", name="cvq", node=CVQSchema)
    cs.store(group="schema/quantizer", name="fsq", node=FSQSchema)
    cs.store(group="schema/quantizer", name="lfq", node=LFQSchema)
    cs.store(group="schema/quantizer", name="simvq", node=SimVQSchema)
    cs.store(group="schema/loss", name="vqgan", node=LossSchema)
    for name, schema in DATASETS.items():
        cs.store(group="schema/dataset", name=name, node=schema)
    cs.store(group="schema/trainer", name="default", node=TrainerSchema)
    cs.store(group="schema", name="prior_train", node=PriorRunSchema)
    cs.store(group="schema/prior", name="default", node=PriorSchema)
