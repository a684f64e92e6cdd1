"""Checkpoints (dcvq.checkpoint): atomic writes, weights_only reads, RNG states."""

import pytest
import torch

from dcvq import checkpoint
from dcvq.checkpoint import read_checkpoint, save_checkpoint


def test_round_trip_with_weights_only(tmp_path):
    path = tmp_path / "c" / "last.pt"
    state = {
        "step": 3,
        "model": {"w": torch.ones(2)},
        "config": "a: 1\n",
        "rng": checkpoint.rng_state(torch.device("cpu")),
    }
    save_checkpoint(state, path)
    back = read_checkpoint(path)
    assert back["step"] == 3 and torch.equal(back["model"]["w"], torch.ones(2))
    assert back["config"] == "a: 1\n"
    expected = torch.rand(3)
    checkpoint.set_rng_state(back["rng"], torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)


def test_failed_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, path)

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert read_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


def test_temp_files_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / ".other.pt.x.tmp").write_bytes(b"not ours")
    save_checkpoint({"step": 1}, tmp_path / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.x.tmp", "last.pt"]


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_refuses_pickled_objects_and_foreign_files(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "x": Evil()}, bad)
    with pytest.raises(RuntimeError, match="weights_only=True"):
        read_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(RuntimeError, match="not a dcvq checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        read_checkpoint(tmp_path / "missing.pt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rng_state_of_the_training_device_round_trips():
    device = torch.device("cuda", torch.cuda.current_device())
    state = checkpoint.rng_state(device)
    expected = torch.rand(3, device=device)
    checkpoint.set_rng_state(state, device)
    assert torch.equal(torch.rand(3, device=device), expected)
    # older checkpoints stored a list, one state per visible device
    checkpoint.set_rng_state(state | {"cuda": [state["cuda"]]}, device)
    assert torch.equal(torch.rand(3, device=device), expected)


def test_result_files_appear_whole_or_not_at_all(tmp_path, monkeypatch):
    from dcvq.checkpoint import write_text_atomic

    path = tmp_path / "eval.json"
    write_text_atomic(path, '{"psnr": 1}')
    assert path.read_text() == '{"psnr": 1}'

    def interrupted(src, dst):
        raise KeyboardInterrupt  # a signal between the write and the rename

    monkeypatch.setattr("dcvq.checkpoint.os.replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic(path, '{"psnr": 2}')
    assert path.read_text() == '{"psnr": 1}'  # the earlier file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]  # no temp file left
