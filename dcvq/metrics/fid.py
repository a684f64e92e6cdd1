"""Streaming rFID with torch-fidelity's InceptionV3 (pool3, 2048-d), never downloading.

Images are fed batch by batch to torch-fidelity's own feature extractor; only running
sums (float64 sum and sum of outer products) are kept, so memory does not grow with
the split. The Fréchet distance is torch-fidelity's formula, computed with symmetric
eigensolvers (tests check it against ``fid_statistics_to_metric`` and
``torch_fidelity.calculate_metrics`` on the same images).

The weights come from a given path or the torch hub cache and must exist: the
extractor is only ever built with an explicit file, so torch-fidelity's download path
is unreachable. torch-fidelity unpickles the file with ``weights_only=False``; it is
first loaded with ``weights_only=True`` and refused unless it is a plain state dict.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from dcvq.errors import MissingFileError
from dcvq.weights import INCEPTION

FEATURE = "2048"  # pool3
EXTRACTOR_NAME = "inception-v3-compat"  # torch-fidelity's registered name
# Inception runs at 299x299 whatever the input size: chunk to bound activation memory.
CHUNK = 64


def inception_cache_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION.name


def resolve_inception_weights(weights: str | os.PathLike | None = None) -> Path:
    """The Inception file to use, checked to exist and to be a plain state dict."""
    path = Path(weights).expanduser() if weights else inception_cache_path()
    if not path.is_file():
        given = f"eval.fid_weights={weights} (not found), " if weights else ""
        raise MissingFileError(
            f"FID needs torch-fidelity's Inception weights ({INCEPTION.name}); looked in "
            f"{given}the torch hub cache ({inception_cache_path()}). On a machine with "
            f"network run `make weights` (python -m dcvq.weights, or download {INCEPTION.url}), "
            "then copy the file here and either set TORCH_HOME so that it is found in "
            "$TORCH_HOME/hub/checkpoints/ or pass eval.fid_weights=PATH. "
            "Set eval.fid=false to evaluate without FID."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RuntimeError(
            f"refusing {path}: it does not load as a plain state dict with "
            f"torch.load(weights_only=True) ({type(e).__name__}: {e}). torch-fidelity would "
            "unpickle it with weights_only=False, which can run arbitrary code. "
            f"Re-download it with `make weights` (expected sha256 {INCEPTION.sha256})."
        ) from e
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise RuntimeError(
            f"refusing {path}: not a state dict of tensors; re-download it with `make weights`"
        )
    return path


def load_inception(
    weights: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """torch-fidelity's frozen InceptionV3 on ``device``, ``uint8 B x 3 x H x W -> B x 2048``."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = resolve_inception_weights(weights)
    net = FeatureExtractorInceptionV3(
        EXTRACTOR_NAME, [FEATURE], feature_extractor_weights_path=str(path)
    )
    return net.to(device).eval()


class FeatureStats:
    """Running mean and covariance of feature vectors, in float64.

    Keeps the sum and the sum of outer products (``d x d``), shifted by the first
    batch's mean so that a large common offset costs no precision. While no more
    vectors than dimensions have been seen, the (shifted) vectors themselves are kept
    too (at most ``d x d`` numbers, the size of the outer-product sum): with ``n < d``
    the Fréchet distance then has an exact, much cheaper form (see
    :func:`frechet_distance`), which is what small training-time evaluations hit.
    """

    def __init__(self) -> None:
        self.n = 0
        self.shift: Tensor | None = None
        self.sum: Tensor | None = None
        self.outer: Tensor | None = None
        self.kept: list[Tensor] | None = []

    def update(self, features: Tensor) -> None:
        f = features.detach().double().reshape(features.shape[0], -1)
        if f.shape[0] == 0:
            return
        if self.shift is None:
            self.shift = f.mean(0)
            self.sum = torch.zeros_like(self.shift)
            self.outer = torch.zeros(f.shape[1], f.shape[1], dtype=f.dtype, device=f.device)
        f = f - self.shift
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.outer += f.T @ f
        if self.kept is not None:
            if self.n <= f.shape[1]:
                self.kept.append(f)
            else:
                self.kept = None  # from here on only the sums are kept

    def mean(self) -> Tensor:
        return self.sum / self.n + self.shift

    def cov(self) -> Tensor:
        """Unbiased covariance, like ``np.cov``."""
        m = self.sum / self.n
        return (self.outer - self.n * torch.outer(m, m)) / (self.n - 1)

    def centered(self) -> Tensor | None:
        """The ``n x d`` centred feature matrix while it is kept, else ``None``."""
        if not self.kept:
            return None
        return torch.cat(self.kept) - self.sum / self.n

    def check(self) -> None:
        if self.n < 2:
            raise ValueError(f"FID needs at least 2 images, got {self.n}")


def trace_sqrt_product(sigma_1: Tensor, sigma_2: Tensor) -> Tensor:
    """``tr(sqrtm(sigma_1 @ sigma_2))`` for symmetric PSD matrices, via ``eigh`` only.

    torch-fidelity sums ``sqrt(eigvals(sigma_1 @ sigma_2))`` with a general (slow)
    eigensolver; the product has the same eigenvalues as the symmetric
    ``R sigma_2 R`` with ``R = sqrtm(sigma_1)``, so two symmetric decompositions give
    the same number several times faster, on CPU or GPU.
    """
    w, v = torch.linalg.eigh(sigma_1)
    root = (v * w.clamp_min(0).sqrt()) @ v.T
    m = root @ sigma_2 @ root
    return torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()


def frechet_distance(stats_1: FeatureStats, stats_2: FeatureStats) -> float:
    """Fréchet distance between two accumulated feature sets (torch-fidelity's formula).

    ``|mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr(sqrtm(S_1 S_2))``. When both sets have
    fewer vectors than dimensions, ``S_i = X_i^T X_i / (n_i - 1)`` with ``X_i`` the
    centred features, and ``tr(sqrtm(S_1 S_2))`` is the nuclear norm of ``X_1 X_2^T``
    divided by ``sqrt((n_1 - 1)(n_2 - 1))``: an ``n_1 x n_2`` SVD instead of ``d x d``
    eigenproblems.
    """
    stats_1.check()
    stats_2.check()
    device = stats_1.sum.device
    diff = stats_1.mean() - stats_2.mean().to(device)
    x1, x2 = stats_1.centered(), stats_2.centered()
    if x1 is not None and x2 is not None:
        c1, c2 = stats_1.n - 1, stats_2.n - 1
        x2 = x2.to(device)
        tr1, tr2 = x1.pow(2).sum() / c1, x2.pow(2).sum() / c2
        tr_covmean = torch.linalg.svdvals(x1 @ x2.T).sum() / (c1 * c2) ** 0.5
    else:
        s1, s2 = stats_1.cov(), stats_2.cov().to(device)
        tr1, tr2 = s1.trace(), s2.trace()
        tr_covmean = trace_sqrt_product(s1, s2)
    return float(diff.dot(diff) + tr1 + tr2 - 2 * tr_covmean)


@contextmanager
def strict_fp32() -> Iterator[None]:
    """TF32 off for convolutions and matrix products (restored after). PyTorch lets cuDNN
    use TF32 by default, which moved pool3 features by up to 0.11 against the CPU on an
    H200: FID must be the same function of the images on every device."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


class StreamingFID:
    """rFID between the split's images and their reconstructions, fed batch by batch."""

    def __init__(self, net: torch.nn.Module, device: str | torch.device = "cpu") -> None:
        """``net``: from :func:`load_inception` (loaded once, reused across evaluations)."""
        self.device = torch.device(device)
        self.net = net
        self.real, self.fake = FeatureStats(), FeatureStats()

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """``uint8 B x 3 x H x W`` -> ``B x 2048`` pool3 features (float32)."""
        if images.dtype != torch.uint8:
            raise TypeError("Inception features need uint8 images")
        with strict_fp32(), torch.autocast(self.device.type, enabled=False):
            chunks = [c for c in images.split(CHUNK) if len(c)]
            parts = [self.net(chunk.to(self.device))[0] for chunk in chunks]
        return torch.cat(parts) if parts else images.new_zeros(0, 2048, dtype=torch.float32)

    def update(self, real: Tensor, fake: Tensor) -> None:
        self.real.update(self.features(real))
        self.fake.update(self.features(fake))

    def compute(self) -> float:
        return frechet_distance(self.real, self.fake)
