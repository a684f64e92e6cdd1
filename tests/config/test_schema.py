"""The quantizer schemas restate their constructors (composing a config must not import
torch, so they cannot be derived from the signatures at registration): one test over
every schema stored under ``schema/quantizer`` keeps them from drifting apart."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from hydra.core.config_store import ConfigStore
from hydra.utils import get_class
from omegaconf import OmegaConf

from dcvq.config import register

register()
GROUP = "schema/quantizer"
SCHEMAS = sorted(name.removesuffix(".yaml") for name in ConfigStore.instance().list(GROUP))


def test_every_quantizer_schema_is_checked():
    assert {"vq", "dual", "gumbel", "cvq"} <= set(SCHEMAS)


@pytest.mark.parametrize("name", SCHEMAS)
def test_schema_matches_the_constructor(name):
    node = ConfigStore.instance().load(f"{GROUP}/{name}.yaml").node
    values = OmegaConf.to_container(node, resolve=False)
    cls = get_class(values.pop("_target_"))
    params = {
        k: p
        for k, p in inspect.signature(cls).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    assert set(values) == set(params), f"schema {name} vs {cls.__name__}'s arguments"
    types = {f.name: f.type for f in dataclasses.fields(OmegaConf.get_type(node))}
    for key, p in params.items():
        assert types[key] == p.annotation, f"{name}.{key}: type"
        if p.default is inspect.Parameter.empty:
            # set by the run (e.g. ${codebook.size}), never a value that could drift
            assert str(values[key]).startswith("${"), f"{name}.{key}: {values[key]!r}"
        else:
            assert values[key] == p.default, f"{name}.{key}: default"
            assert type(values[key]) is type(p.default), f"{name}.{key}: default's type"
