"""LPIPS (VGG), loaded without network access: a metric the evaluation reports and the
training loss (``dcvq.losses.VQGANLoss``) uses as its perceptual term. It lives here, below
both, as FID's Inception does in ``dcvq.metrics.fid``.

The ``lpips`` package ships only its linear heads; its VGG16 backbone normally comes
from a torchvision download. Here the backbone is always built empty
(``pnet_rand=True``) and filled from a local file: ``weights`` if given, else the torch
hub cache. A missing file is an error that says how to fetch it; by default the error
names the training loss's settings (the evaluation passes its own).
"""

from __future__ import annotations

import os
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import Tensor, nn

from dcvq.errors import MissingFileError
from dcvq.weights import VGG16


def vgg16_cache_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16.name


def resolve_vgg16_weights(
    weights: str | os.PathLike | None,
    key: str = "loss.lpips_weights",
    off: str = "loss.perceptual_weight=0 to train",
) -> Path:
    """The VGG16 file to use; ``key`` and ``off`` name the settings in the error."""
    path = Path(weights).expanduser() if weights else vgg16_cache_path()
    if not path.is_file():
        where = f"{key}={weights}" if weights else f"the torch hub cache ({path})"
        raise MissingFileError(
            f"LPIPS needs torchvision's VGG16 weights but none were found at {where}. "
            f"On a machine with network run `make weights` (or download {VGG16.url} into "
            f"{vgg16_cache_path().parent}/), copy the file to this machine and either set "
            "TORCH_HOME so that it is found in $TORCH_HOME/hub/checkpoints/, or pass its "
            f"path as {key}=PATH. Set {off} without LPIPS."
        )
    return path


class LPIPS(nn.Module):
    """Frozen LPIPS-VGG distance, ``forward(x, y) -> B x 1 x 1 x 1`` for images in [-1, 1].

    The VGG16 trunk runs under the caller's autocast when that is bf16 (the training step's
    ``trainer.precision=bf16``), in fp32 otherwise: fp16 (largest value 65504) can
    overflow on its unnormalised ReLU features. What follows stays fp32 whatever the
    autocast: each position's feature vector is divided by its norm (a square root of a
    sum over up to 512 channels), then the two images' unit vectors are subtracted, and
    for a good reconstruction they nearly cancel: bf16's 8-bit mantissa there would leave
    mostly rounding. Bounded against fp32 in ``tests/losses/test_vqgan.py``.
    """

    def __init__(self, weights: str | os.PathLike | None = None, **names: str) -> None:
        """``names``: ``key``/``off`` of :func:`resolve_vgg16_weights` for the error."""
        super().__init__()
        import lpips  # heavy import, only when LPIPS is used

        path = resolve_vgg16_weights(weights, **names)
        self.weights_path = path
        with warnings.catch_warnings():  # lpips uses torchvision's deprecated `pretrained=`
            warnings.simplefilter("ignore", UserWarning)
            self.net = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise RuntimeError(
                f"could not read VGG16 weights from {path} as a plain state dict ({e}); "
                "re-download the file (see `make weights`)"
            ) from e
        features = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        if not features:
            raise RuntimeError(f"{path} holds no 'features.*' tensors: not a torchvision VGG16")
        # lpips splits vgg.features into slice1..5 that keep torchvision's layer indices.
        mapped = {}
        for slice_name, block in self.net.net.named_children():
            for idx, _ in block.named_children():
                for pname in ("weight", "bias"):
                    key = f"{idx}.{pname}"
                    if key in features:
                        mapped[f"{slice_name}.{key}"] = features[key]
        missing = {k for k in self.net.net.state_dict() if k not in mapped}
        if missing:
            raise RuntimeError(f"{path} lacks VGG16 layers {sorted(missing)[:4]}...")
        self.net.net.load_state_dict(mapped)
        self.normalize = lpips.normalize_tensor  # each position's features to unit norm
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)  # frozen: never dropout/train mode

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        # lpips.LPIPS.forward (version 0.1, no spatial map), with the autocast split above
        device, net = x.device.type, self.net
        bf16 = torch.is_autocast_enabled(device) and (
            torch.get_autocast_dtype(device) == torch.bfloat16
        )
        with nullcontext() if bf16 else torch.autocast(device, enabled=False):
            feats = [net.net(net.scaling_layer(image.float())) for image in (x, y)]
        with torch.autocast(device, enabled=False):
            total = 0
            for lin, a, b in zip(net.lins, *feats, strict=True):
                diff = self.normalize(a.float()) - self.normalize(b.float())
                total = total + lin(diff * diff).mean((2, 3), keepdim=True)
            return total
