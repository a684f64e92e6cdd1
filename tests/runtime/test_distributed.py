"""Where a process computes: device names and the precision settings' autocast dtypes."""

import pytest
import torch

from dcvq.runtime.distributed import DistEnv, amp_dtype, resolve_device


def test_device_names_resolve_with_clear_errors():
    assert resolve_device("cpu", DistEnv()) == torch.device("cpu")
    with pytest.raises(ValueError, match="trainer.device='gpu0': use auto, cpu, cuda"):
        resolve_device("gpu0", DistEnv())
    with pytest.raises(ValueError, match="every rank on one GPU; use device=cuda"):
        resolve_device("cuda:1", DistEnv(0, 2, 0), key="device")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device is visible; use trainer.device=cpu"):
            resolve_device("cuda", DistEnv())


def test_amp_dtype_of_each_precision_setting():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert amp_dtype("auto", cpu) is None and amp_dtype("fp32", cuda) is None
    assert amp_dtype("auto", cuda) is torch.bfloat16 and amp_dtype("bf16", cpu) is torch.bfloat16
    assert amp_dtype("fp16", cuda) is torch.float16
