"""Streaming FID plumbing on stand-in Inception weights (see conftest.py)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from dcvq.metrics.fid import (
    FeatureStats,
    StreamingFID,
    frechet_distance,
    load_inception,
    resolve_inception_weights,
    strict_fp32,
)

N = 4  # images per set: enough for a non-degenerate FID; Inception runs at 299x299


@pytest.fixture(scope="session")
def image_sets(make_images) -> tuple[torch.Tensor, torch.Tensor]:
    return make_images(N, 32, seed=1), make_images(N, 32, seed=2)


@pytest.fixture(scope="session")
def features(standin_inception_file, image_sets) -> tuple[torch.Tensor, torch.Tensor]:
    net = load_inception(standin_inception_file)
    with torch.no_grad():
        return tuple(net(images)[0] for images in image_sets)


def stats(*chunks: torch.Tensor) -> FeatureStats:
    s = FeatureStats()
    for c in chunks:
        s.update(c)
    return s


def test_features_do_not_collapse(features):
    a, _ = features
    assert a.shape == (N, 2048)
    assert a.std(0).mean() > 1e-2  # a plain random init gives ~0 here


def test_fid_of_a_set_with_itself_is_zero(features):
    a, b = features
    scale = frechet_distance(stats(a), stats(b))
    assert abs(frechet_distance(stats(a), stats(a))) < 1e-4 * scale


def test_fid_of_different_sets_is_positive_and_symmetric(features):
    a, b = features
    ab, ba = frechet_distance(stats(a), stats(b)), frechet_distance(stats(b), stats(a))
    assert ab > 1.0
    assert ab == pytest.approx(ba, rel=1e-6)


def torch_fidelity_fid(*feature_sets: torch.Tensor) -> float:
    """torch-fidelity's own one-shot statistics and distance."""
    from torch_fidelity.metric_fid import (
        KEY_METRIC_FID,
        fid_features_to_statistics,
        fid_statistics_to_metric,
    )

    a, b = (fid_features_to_statistics(f.double()) for f in feature_sets)
    return fid_statistics_to_metric(a, b, verbose=False)[KEY_METRIC_FID]


def test_streamed_statistics_equal_one_shot(features):
    from torch_fidelity.metric_fid import fid_features_to_statistics

    a, _ = features
    streamed = stats(a[:1], a[1:3], a[3:])
    mu, sigma = streamed.mean().numpy(), streamed.cov().numpy()
    one = fid_features_to_statistics(a.double())
    np.testing.assert_allclose(mu, one["mu"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sigma, one["sigma"], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("n", [10, 200])  # fewer / more vectors than dimensions
def test_streamed_fid_equals_torch_fidelity_one_shot(n):
    # Low dimension keeps torch-fidelity's general eigensolver fast; the formula is the
    # same at 2048. n=10 takes the Gram (SVD) path, n=200 the covariance (eigh) path.
    g = torch.Generator().manual_seed(n)
    a = torch.randn(n, 64, generator=g).abs() * 2
    b = torch.randn(n, 64, generator=g).abs() * 1.5 + 0.3 * torch.rand(64, generator=g)
    chunks_a, chunks_b = a.split(7), b.split(13)
    streamed = frechet_distance(stats(*chunks_a), stats(*chunks_b))
    assert streamed == pytest.approx(torch_fidelity_fid(a, b), rel=1e-7)
    assert (stats(*chunks_a).centered() is None) == (n > 64)


def test_gram_and_covariance_paths_agree():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(12, 128, generator=g), torch.rand(9, 128, generator=g) * 1.2
    small = frechet_distance(stats(a), stats(b))
    big_a, big_b = stats(a), stats(b)
    big_a.kept = big_b.kept = None  # force the d x d path
    # sqrt of the ~1e-15 eigenvalues of a rank-deficient product adds ~1e-8 noise
    assert frechet_distance(big_a, big_b) == pytest.approx(small, rel=1e-6)


@pytest.mark.slow  # torch-fidelity's 2048x2048 general eigensolver: ~20-40 s on 2 cores
def test_streaming_fid_matches_torch_fidelity_calculate_metrics(standin_inception_file, image_sets):
    import torch_fidelity

    a, b = image_sets
    fid = StreamingFID(load_inception(standin_inception_file))
    fid.update(a[:3], b[:3])
    fid.update(a[3:], b[3:])
    ours = fid.compute()

    class Images(torch.utils.data.Dataset):  # torch-fidelity wants bare uint8 3xHxW
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    want = torch_fidelity.calculate_metrics(
        input1=Images(a),
        input2=Images(b),
        fid=True,
        cuda=False,
        save_cpu_ram=True,
        cache=False,
        verbose=False,
        batch_size=N,
        feature_extractor_weights_path=str(standin_inception_file),
    )["frechet_inception_distance"]
    assert ours == pytest.approx(want, rel=1e-4)


def test_one_image_is_not_enough():
    one, two = stats(torch.ones(1, 2048)), stats(torch.rand(2, 2048))
    for pair in ((one, two), (two, one)):
        with pytest.raises(ValueError, match="at least 2 images, got 1"):
            frechet_distance(*pair)


def test_missing_weights_fail_before_torch_fidelity_downloads(monkeypatch, empty_torch_home):
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    def no_network(*args, **kwargs):
        raise AssertionError("torch-fidelity tried to download its weights")

    monkeypatch.setattr(fe, "load_state_dict_from_url", no_network)
    with pytest.raises(FileNotFoundError) as err:
        load_inception()
    msg = str(err.value)
    assert str(empty_torch_home / "hub" / "checkpoints") in msg
    assert "make weights" in msg and "eval.fid_weights" in msg
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_inception(empty_torch_home / "nowhere.pth")


def test_weights_found_in_the_hub_cache(inception_weights):
    assert resolve_inception_weights() == inception_weights


class NotATensor:
    pass


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(1), "payload": NotATensor()}, path)
    with pytest.raises(RuntimeError, match="weights_only=True"):
        resolve_inception_weights(path)
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps(NotATensor(), protocol=2))
    with pytest.raises(RuntimeError, match="refusing"):
        resolve_inception_weights(raw)


def test_non_state_dict_is_refused(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"fc.weight": 1.0}, path)
    with pytest.raises(RuntimeError, match="not a state dict"):
        resolve_inception_weights(path)


def test_features_run_without_tf32_and_restore_the_settings():
    """cuDNN's default TF32 moved pool3 features by 0.11 on an H200: the extractor runs
    with TF32 off, and the caller's settings come back afterwards, errors included."""
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
            return [x.float().flatten(1)[:, :4]]

    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        StreamingFID(Probe()).features(torch.zeros(3, 3, 2, 2, dtype=torch.uint8))
        assert seen == [(False, False)]
        with pytest.raises(RuntimeError), strict_fp32():
            raise RuntimeError
        assert torch.backends.cudnn.allow_tf32 == before[0]
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_features_match_cpu(standin_inception_file, image_sets, features):
    a, _ = image_sets
    fid = StreamingFID(load_inception(standin_inception_file, "cuda"), device="cuda")
    got = fid.features(a).cpu()
    assert next(fid.net.parameters()).is_cuda
    torch.testing.assert_close(got, features[0], rtol=1e-3, atol=1e-3)
