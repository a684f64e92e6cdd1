"""trainer.compile and trainer.channels_last: applied in place, checkpoints unchanged."""

import math

import pytest
import torch

from dcvq.config import ConfigError
from dcvq.trainer import Trainer


def test_unknown_compile_value_names_the_key(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="trainer.compile='fast'"):
        Trainer(tiny_cfg("trainer.compile=fast"), tmp_path)


def test_compile_codebook_needs_a_transformer_codebook(tiny_cfg, tmp_path):
    with pytest.raises(ValueError, match="trainer.compile=codebook"):
        Trainer(tiny_cfg("trainer.compile=codebook", quantizer="s128_s128"), tmp_path)


def test_channels_last_trains_with_the_same_losses(tiny_cfg, tmp_path):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    logs = {}
    for layout in ("false", "true"):
        torch.manual_seed(0)
        trainer = Trainer(tiny_cfg(f"trainer.channels_last={layout}"), tmp_path / layout)
        logs[layout] = trainer.train_step([x])
    conv = trainer.model.decoder.conv_out.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    for key, value in logs["false"].items():
        assert math.isclose(logs["true"][key], value, rel_tol=1e-4, abs_tol=1e-5), key


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["codebook", "model"])
def test_compiled_training_matches_eager_and_keeps_checkpoint_keys(tiny_cfg, tmp_path, mode):
    """The first call compiles with inductor (a C++ compiler at run time: up to a minute
    for the whole model on 2 cores)."""
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    # no dropout: compiled and eager RNG streams differ; the discriminator on from the
    # start: the adaptive weight differentiates the compiled decoder twice
    overrides = ["quantizer.transformer_dropout=0.0", "loss.disc_start=0"]
    trainers, logs = {}, {}
    for option in ("none", mode):
        torch.manual_seed(0)
        trainers[option] = Trainer(
            tiny_cfg(*overrides, f"trainer.compile={option}"), tmp_path / option
        )
        logs[option] = trainers[option].train_step([x])
    for key, value in logs["none"].items():
        assert math.isclose(logs[mode][key], value, rel_tol=1e-3, abs_tol=1e-4), key
    compiled, eager = trainers[mode], trainers["none"]
    module = (
        compiled.model if mode == "model" else compiled.model.quantizer.global_codebook.transformer
    )
    assert module._compiled_call_impl is not None  # what Module.compile installs
    assert compiled.model.state_dict().keys() == eager.model.state_dict().keys()
    assert compiled.state_dict().keys() == eager.state_dict().keys()
