"""Validation reads what a quantizer's class declares (signature, dim), whatever the class:
a user's own quantizer, in a module of their own, is checked like dcvq's."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator

import pytest
from omegaconf import DictConfig, OmegaConf

from dcvq.config import ConfigError, validate

USER_MODULE = '''
from dcvq.quantizers import Quantizer, VectorQuantizer


class ScaledVQ(VectorQuantizer):
    """VQ with a wider initial codebook."""

    def __init__(self, codebook_size: int, dim: int, init_scale: float = 1.0) -> None:
        super().__init__(codebook_size, dim)
        self.codebook.embedding.weight.data.mul_(init_scale)


class SplitVQ(VectorQuantizer):
    """dim from two arguments, declared nowhere: validation reads it off an instance."""

    def __init__(self, codebook_size: int, half: int) -> None:
        super().__init__(codebook_size, 2 * half)


class NotAQuantizer:
    def __init__(self, dim: int) -> None:
        self.dim = dim
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch) -> Iterator[str]:
    """``my_quantizers``, this module's version: tests/test_user_quantizer.py imports the
    README's under the same name, so neither may find the other's in sys.modules."""
    (tmp_path / "my_quantizers.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_quantizers", None)
    yield "my_quantizers"
    sys.modules.pop("my_quantizers", None)


def cfg(**quantizer) -> DictConfig:
    return OmegaConf.create(
        {
            "codebook": {"size": 8},
            "model": {"embed_dim": 16, "ch": 32, "ch_mult": [1]},
            "quantizer": quantizer,
        }
    )


def errors(config) -> str:
    with pytest.raises(ConfigError) as info:
        validate(config)
    return str(info.value)


def test_a_user_quantizer_with_its_keys_validates(user_module):
    validate(cfg(_target_=f"{user_module}.ScaledVQ", codebook_size=8, dim=16, init_scale=2.0))
    validate(cfg(_target_=f"{user_module}.SplitVQ", codebook_size="${codebook.size}", half=8))


def test_a_typo_names_the_key_and_the_class(user_module):
    text = errors(cfg(_target_=f"{user_module}.ScaledVQ", codebook_size=8, dim=16, init_scal=2))
    assert "quantizer.init_scal: my_quantizers.ScaledVQ has no argument 'init_scal'" in text
    assert "init_scale" in text  # the arguments it does take


def test_a_missing_argument_names_the_key_and_the_class(user_module):
    text = errors(cfg(_target_=f"{user_module}.ScaledVQ", codebook_size=8))
    assert "quantizer.dim: my_quantizers.ScaledVQ requires it" in text
    assert "+quantizer.dim=" in text


def test_dim_comes_from_the_class(user_module):
    text = errors(cfg(_target_=f"{user_module}.SplitVQ", codebook_size=8, half=4))
    assert "my_quantizers.SplitVQ: dim=8 (its latent width) must equal model.embed_dim=16" in text
    # key names alone mean nothing: a dim key is checked through the instance
    assert "quantizer.dim=" not in text


def test_a_class_that_is_not_a_quantizer_or_not_importable(user_module):
    text = errors(cfg(_target_=f"{user_module}.NotAQuantizer", dim=16))
    assert "not a subclass of dcvq.quantizers.Quantizer" in text
    text = errors(cfg(_target_=f"{user_module}.Missing", dim=16))
    assert "quantizer._target_=my_quantizers.Missing: cannot import it" in text


def test_constructor_errors_are_validation_errors_that_name_the_keys():
    from dcvq.config import compose

    text = errors(compose(["quantizer.global_dim=0", "quantizer.local_dim=256"]))
    assert "quantizer.global_dim=0, quantizer.local_dim=256: both must be >= 1" in text
    assert "dcvq.quantizers.DualCodebookQuantizer" in text
    text = errors(compose(["+baseline=gumbel", "quantizer.temperature_schedule=linear"]))
    assert "quantizer.temperature_schedule must be one of" in text


def test_validation_builds_nothing_real():
    """The width is read from an instance on the meta device: no memory, no RNG draws
    (the trainer seeds after validating)."""
    import torch

    from dcvq.config import compose

    config = compose(["codebook.size=16384"])
    state = torch.random.get_rng_state()
    validate(config)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_a_study_refuses_to_run_without_its_per_row_learning_rate():
    """experiment=study_photos chooses trainer.lr per row on val: a command that forgets
    it stops at validation (before anything is built), naming the key."""
    from dcvq.config import compose
    from dcvq.errors import ConfigError

    with pytest.raises(ConfigError, match="trainer.lr is chosen per row"):
        validate(compose(["experiment=study_photos"]))
    validate(compose(["experiment=study_photos", "trainer.lr=0.001"]))
