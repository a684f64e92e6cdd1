"""`dcvq.metrics.evaluator.Evaluator` end to end on a tiny dual-codebook VQGAN."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from dcvq.data import SampleImages, collate
from dcvq.metrics.evaluator import Evaluator
from dcvq.model.vqgan import VQModel
from dcvq.quantizers import DualCodebookQuantizer

RES = 32
KEYS = {
    "fid",
    "psnr",
    "l1",
    "l2",
    "ssim",
    "lpips",
    "codebooks",
    "pairs",
    "protocol",
    "note",
    "split",
    "n_images",
    "skipped",
    "versions",
    "weights",
    "not_measured",
}


@pytest.fixture(scope="module")
def model() -> VQModel:
    torch.manual_seed(0)
    quantizer = DualCodebookQuantizer(
        64, global_dim=128, local_dim=128, transformer_layers=1, transformer_ff=64
    )
    return VQModel(
        quantizer,
        ch=32,
        ch_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(),
        resolution=RES,
        z_channels=32,
    )


@pytest.fixture(scope="module")
def val_images() -> SampleImages:
    return SampleImages("val", RES)


class Counting(Dataset):
    """Wraps a dataset, counts reads and fails to decode the items listed in ``bad``."""

    def __init__(self, base: Dataset, bad: tuple[int, ...] = ()) -> None:
        self.base, self.bad, self.reads = base, bad, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        self.reads += 1
        image, name = self.base[i]
        return (None, name) if i in self.bad else (image, name)


def loader(ds: Dataset, batch_size: int = 2) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, collate_fn=collate)


def test_clean_returns_every_key_json_ready(model, val_images):
    model.train()
    seen_modes = []
    hook = model.register_forward_pre_hook(lambda m, args: seen_modes.append(m.training))
    try:
        ds = Counting(val_images)
        r = Evaluator(device="cpu")(model, loader(ds), max_images=5)
    finally:
        hook.remove()
    assert seen_modes and not any(seen_modes)  # evaluated in eval mode...
    assert model.training  # ...and the previous mode is restored
    assert ds.reads == 6  # stopped after the batch that reached max_images
    assert set(r) == KEYS
    json.loads(json.dumps(r, allow_nan=False))
    assert r["n_images"] == 5 and r["protocol"] == "clean" and r["split"] == "val"
    assert r["fid"] is None and r["lpips"] is None and r["skipped"] == []
    assert r["weights"] == {}
    assert 0 < r["l1"] < 1 and 0 < r["l2"] < 1 and 0 < r["psnr"] < 100 and -1 < r["ssim"] <= 1
    assert set(r["versions"]) == {"torch", "torch-fidelity", "lpips", "dcvq"}
    tokens = 5 * (RES // model.downsample_factor) ** 2
    for name in ("global", "local"):
        cb = r["codebooks"][name]
        assert cb["size"] == 64 and len(cb["counts"]) == 64 and sum(cb["counts"]) == tokens
        assert cb["used"] + cb["dead"] == 64
        assert cb["usage"] == pytest.approx(100 * cb["used"] / 64)
        assert 1 <= cb["perplexity"] <= cb["used"]
        assert 1 <= cb["distinct"] <= cb["used"]
        assert cb["distinct_usage"] == pytest.approx(100 * cb["distinct"] / 64)
    assert r["pairs"]["possible"] == 64 * 64
    assert 1 <= r["pairs"]["unique"] <= tokens


def test_vqct_with_lpips_and_fid_on_standin_weights(
    model, val_images, lpips_weights, inception_weights
):
    evaluator = Evaluator(device="cpu", protocol="vqct", fid=True, lpips=True)
    r = evaluator(model, loader(val_images), max_images=2, split="test")
    assert r["n_images"] == 2 and r["protocol"] == "vqct" and r["split"] == "test"
    assert "approximates" in r["note"]
    assert r["lpips"] is not None and r["lpips"] >= 0
    assert r["fid"] is not None and r["fid"] > 0
    # the stand-ins are recorded as such: their numbers are not comparable
    assert r["weights"] == {
        "inception": {"path": str(inception_weights), "official": False},
        "vgg16": {"path": str(lpips_weights), "official": False},
    }
    json.dumps(r, allow_nan=False)


def test_same_images_same_numbers(model, val_images):
    # batch size must not change per-image averages or usage
    evaluator = Evaluator(device="cpu")
    a = evaluator(model, loader(val_images, 1), max_images=4)
    b = evaluator(model, loader(val_images, 4), max_images=4)
    for key in ("psnr", "l1", "l2", "ssim"):
        assert a[key] == pytest.approx(b[key], rel=1e-5)
    assert a["codebooks"]["local"]["counts"] == b["codebooks"]["local"]["counts"]


def test_skipped_files_are_listed_not_counted(model, val_images):
    ds = Counting(val_images, bad=(1, 2))
    r = Evaluator(device="cpu")(model, loader(ds), max_images=3)
    assert r["n_images"] == 3
    assert r["skipped"] == [val_images[1][1], val_images[2][1]]


def test_reconstructions_are_written_as_png(model, val_images, tmp_path):
    Evaluator(device="cpu")(model, loader(val_images), max_images=3, reconstructions_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"{val_images[i][1]}.png" for i in range(3))


class Renamed(Dataset):
    """``val_images`` under the given names."""

    def __init__(self, base: Dataset, names: list[str]) -> None:
        self.base, self.names = base, names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int):
        return self.base[i][0], self.names[i]


def test_reconstructions_with_colliding_names_are_all_kept(model, val_images, tmp_path):
    names = ["a/x.jpg", "a/x.png", "a__x.jpg"]  # all three flatten to a__x.png
    Evaluator(device="cpu")(model, loader(Renamed(val_images, names)), reconstructions_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a__x.000001.png", "a__x.000002.png", "a__x.png"
    ]  # fmt: skip


def test_missing_fid_weights_fail_before_any_work():
    with pytest.raises(FileNotFoundError, match="make weights"):
        Evaluator(device="cpu", fid=True)  # when built: before any image is read


def test_missing_lpips_weights_fail_clearly():
    with pytest.raises(FileNotFoundError, match="VGG16") as err:
        Evaluator(device="cpu", lpips=True)
    assert "make weights" in str(err.value) and "eval.lpips=false" in str(err.value)


def test_unknown_protocol():
    with pytest.raises(ValueError, match="eval.protocol"):
        Evaluator(device="cpu", protocol="jpeg")


def test_empty_loader_gives_nulls(model):
    r = Evaluator(device="cpu")(model, [])
    assert r["n_images"] == 0 and r["psnr"] is None
    json.dumps(r, allow_nan=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(model, val_images, lpips_weights, inception_weights):
    kwargs = dict(protocol="vqct", fid=True, lpips=True)
    cpu = Evaluator(device="cpu", **kwargs)(model, loader(val_images), max_images=4)
    gpu_model = model.to("cuda")
    try:
        gpu = Evaluator(device="cuda", **kwargs)(gpu_model, loader(val_images), max_images=4)
    finally:
        model.to("cpu")
    for key in ("psnr", "l1", "l2", "ssim", "lpips", "fid"):
        assert gpu[key] == pytest.approx(cpu[key], rel=1e-2, abs=1e-3), key
