"""trainer.compile and trainer.channels_last: applied in place, checkpoints unchanged, the
same training steps as eager fp32 to rounding (each step from the same state, bounds from
``numerics``: the comparison of tests/trainer/test_equivalence.py)."""

import pytest
import torch
import torch._inductor.config as inductor_config
from trainer.test_equivalence import COMMON, DISC_ON, assert_same_steps, run_steps

from dcvq.config import ConfigError
from dcvq.trainer import Trainer


def test_unknown_compile_value_names_the_key(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="trainer.compile='fast'"):
        Trainer(tiny_cfg("trainer.compile=fast"), tmp_path)


def test_compile_codebook_needs_a_transformer_codebook(tiny_cfg, tmp_path):
    with pytest.raises(ValueError, match="trainer.compile=codebook"):
        Trainer(tiny_cfg("trainer.compile=codebook", quantizer="s128_s128"), tmp_path)


def test_channels_last_trains_with_the_same_losses(tiny_cfg, tmp_path):
    cfg = tiny_cfg(*COMMON, *DISC_ON)
    ref = run_steps(cfg, tmp_path / "ref", 1)
    run = run_steps(tiny_cfg(*COMMON, *DISC_ON, "trainer.channels_last=true"), tmp_path / "cl", 1)
    assert_same_steps(run, ref, cfg, disc=True)


@pytest.fixture
def one_compile_thread():
    # compile in this process: on 2 cores a pool of compiler processes costs more than
    # it saves (measured: 114 against 142 s of CPU)
    with inductor_config.patch(compile_threads=1):
        yield


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["codebook", "model"])
def test_compiled_training_matches_eager_and_keeps_checkpoint_keys(
    tiny_cfg, tmp_path, one_compile_thread, mode
):
    """Two steps with the discriminator and the adaptive weight on (which differentiates
    the compiled decoder twice). The first call compiles with inductor (a C++ compiler at
    run time: about 2 minutes of CPU for the generator step's networks, none once
    inductor's cache in /tmp holds them)."""
    cfg = tiny_cfg(*COMMON, *DISC_ON)  # no dropout: compiled and eager draw other masks
    ref = run_steps(cfg, tmp_path / "eager", 2)
    compiled_cfg = tiny_cfg(*COMMON, *DISC_ON, f"trainer.compile={mode}")
    run = run_steps(compiled_cfg, tmp_path / mode, 2, states=ref["states"])
    assert_same_steps(run, ref, cfg, disc=True)
    for got, want in zip(run["indices"], ref["indices"], strict=True):
        assert torch.equal(got, want)
    trainer = Trainer(compiled_cfg, tmp_path / "keys")
    eager = Trainer(cfg, tmp_path / "eager_keys")
    quantizer = trainer.model.quantizer
    compiled = (
        [trainer.model, trainer.loss.discriminator]  # LPIPS too, where the loss has it
        if mode == "model"
        else [quantizer.global_codebook.transformer]
    )
    for module in compiled:
        assert module._compiled_call_impl is not None  # what Module.compile installs
    assert trainer.state_dict().keys() == eager.state_dict().keys()
    assert trainer.model.state_dict().keys() == eager.model.state_dict().keys()
