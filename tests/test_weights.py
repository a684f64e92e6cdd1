"""`python -m dcvq.weights`: hash checks and skip logic, offline (no download ever)."""

from __future__ import annotations

import hashlib
import socket
import urllib.error
from pathlib import Path

import pytest

from dcvq import weights
from dcvq.weights import WeightFile, checkpoints_dir, fetch, main, sha256_of

PAYLOAD = b"pretend these are weights"
GOOD = WeightFile(
    "fake-0123abcd.pth",
    "https://example.invalid/fake.pth",
    hashlib.sha256(PAYLOAD).hexdigest(),
    "tests",
)


class FakeDownload:
    """Stands in for the network: writes ``payload`` and records each call."""

    def __init__(self, payload: bytes = PAYLOAD) -> None:
        self.payload, self.calls = payload, []

    def __call__(self, url: str, dst: Path) -> None:
        self.calls.append(url)
        dst.write_bytes(self.payload)


def test_known_hashes_match_the_file_names_and_upstream_urls():
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    from torchvision.models import VGG16_Weights

    assert weights.INCEPTION.url == URL_INCEPTION_V3
    assert weights.VGG16.url == VGG16_Weights.IMAGENET1K_V1.url
    for spec in weights.ALL:
        # torch hub convention: the name ends with the sha256 prefix
        assert spec.name.rsplit("-", 1)[1].split(".")[0] == spec.sha256[:8]
        assert spec.url.endswith("/" + spec.name)


def test_downloads_into_dest_hub_checkpoints_and_verifies(tmp_path):
    download = FakeDownload()
    (path,) = fetch(tmp_path, files=[GOOD], download=download, log=lambda s: None)
    assert path == tmp_path / "hub" / "checkpoints" / GOOD.name
    assert path.read_bytes() == PAYLOAD and download.calls == [GOOD.url]
    assert not list(path.parent.glob("*.part"))


def test_skips_a_present_valid_file(tmp_path):
    folder = checkpoints_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / GOOD.name).write_bytes(PAYLOAD)
    download = FakeDownload()
    fetch(tmp_path, files=[GOOD], download=download, log=lambda s: None)
    assert download.calls == []


def test_replaces_a_present_corrupt_file(tmp_path):
    folder = checkpoints_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / GOOD.name).write_bytes(b"truncated")
    download = FakeDownload()
    fetch(tmp_path, files=[GOOD], download=download, log=lambda s: None)
    assert download.calls == [GOOD.url]
    assert sha256_of(folder / GOOD.name) == GOOD.sha256


def test_bad_download_raises_and_installs_nothing(tmp_path):
    download = FakeDownload(b"something else")
    with pytest.raises(RuntimeError, match="sha256"):
        fetch(tmp_path, files=[GOOD], download=download, log=lambda s: None)
    assert list(checkpoints_dir(tmp_path).iterdir()) == []


def test_is_official_compares_the_whole_file(tmp_path):
    path = tmp_path / GOOD.name
    path.write_bytes(PAYLOAD)
    assert weights.is_official(path, GOOD)
    path.write_bytes(PAYLOAD + b"!")  # new size: the cached answer is not reused
    assert not weights.is_official(path, GOOD)


def test_default_dest_is_the_torch_hub_cache(empty_torch_home):
    assert checkpoints_dir() == empty_torch_home / "hub" / "checkpoints"


def test_cli_reports_failure_and_explains_torch_home(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(weights, "ALL", (GOOD,))
    monkeypatch.setattr(weights, "_download", FakeDownload())
    assert main(["--dest", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"TORCH_HOME={tmp_path.resolve()}" in out
    monkeypatch.setattr(weights, "_download", FakeDownload(b"corrupt"))
    (checkpoints_dir(tmp_path) / GOOD.name).unlink()
    assert main(["--dest", str(tmp_path)]) == 1
    assert "sha256" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            urllib.error.URLError(socket.gaierror(-2, "Name or service not known")),
            "[Errno -2] Name or service not known",
        ),
        (ConnectionResetError(104, "Connection reset by peer"), "Connection reset by peer"),
    ],
)
def test_offline_it_says_to_run_elsewhere_and_copy_the_hub(
    tmp_path, monkeypatch, capsys, error, reason
):
    """No network (torch's downloader raises urllib's error) or a broken transfer: the
    command says where to run it and what to copy, not only urllib's reason."""

    def offline(url: str, dst: Path) -> None:
        dst.write_bytes(b"half")
        raise error

    monkeypatch.setattr(weights, "ALL", (GOOD,))
    monkeypatch.setattr(weights, "_download", offline)
    assert main(["--dest", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot download {GOOD.url} (") and reason in err
    assert "Run `make weights` on a machine with network, then copy its $TORCH_HOME/hub" in err
    assert f"(here it would be {tmp_path / 'hub'})" in err
    assert list(checkpoints_dir(tmp_path).iterdir()) == []  # no partial file left
