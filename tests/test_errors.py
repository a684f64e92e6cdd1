"""dcvq.errors: what the entry points print for a user's mistake, and the run dirs a failed
start leaves (none). The entry points as a user runs them: tests/test_train.py."""

from __future__ import annotations

import pytest
import torch
from hydra.errors import InstantiationException

from dcvq.checkpoint import read_checkpoint, save_checkpoint
from dcvq.errors import CheckpointError, ConfigError, MissingFileError, reported, user_error


@pytest.fixture
def no_full_error(monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)


def hydra_run_dir(path, extra: tuple[str, ...] = ()):
    """A run dir as Hydra leaves it when a job starts, plus ``extra`` files."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text("a: 1\n")
    (path / "train.log").write_text("[INFO] starting\n")
    for name in extra:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text("of value\n")
    return path


def test_a_user_error_is_one_paragraph_and_status_1(no_full_error, capsys):
    with pytest.raises(SystemExit) as exit_, reported():
        raise ConfigError("invalid configuration:\n  - quantizer.x: no such argument")
    assert exit_.value.code == 1
    assert capsys.readouterr().err == (
        "error: invalid configuration:\n  - quantizer.x: no such argument\n"
    )


def test_the_error_behind_hydras_instantiate_is_found(no_full_error, capsys):
    try:
        raise InstantiationException("Error in call to target 'x.Y'") from MissingFileError(
            "COCO: dataset.root='/nope' does not exist."
        )
    except InstantiationException as e:
        wrapped = e
    assert isinstance(user_error(wrapped), MissingFileError)
    with pytest.raises(SystemExit), reported():
        raise wrapped
    assert capsys.readouterr().err == "error: COCO: dataset.root='/nope' does not exist.\n"


def test_a_bug_keeps_its_traceback(no_full_error, tmp_path):
    with pytest.raises(KeyError), reported(tmp_path / "run", "train.log"):
        raise KeyError("a bug")
    assert user_error(RuntimeError("torch's")) is None


def test_hydra_full_error_raises_the_user_error(monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError), reported():
        raise ConfigError("x")


@pytest.mark.parametrize("error", [ConfigError("bad key"), KeyError("a bug")])
def test_a_failed_start_removes_a_run_dir_of_hydras_files_only(no_full_error, tmp_path, error):
    run = hydra_run_dir(tmp_path / "run")
    with pytest.raises((SystemExit, KeyError)), reported(run, "train.log"):
        raise error
    assert not run.exists()


@pytest.mark.parametrize(
    "kept", ["checkpoints/last.pt", "eval.json", "metrics.jsonl", "notes.txt", "wandb/run"]
)
def test_a_run_dir_with_anything_else_is_kept(no_full_error, tmp_path, kept):
    run = hydra_run_dir(tmp_path / "run", extra=(kept,))
    with pytest.raises(SystemExit), reported(run, "train.log"):
        raise ConfigError("bad key")
    assert (run / kept).is_file() and (run / ".hydra" / "config.yaml").is_file()


def test_a_directory_given_as_checkpoint_points_at_the_checkpoint_in_it(tmp_path):
    run = tmp_path / "run"
    save_checkpoint({"step": 1}, run / "checkpoints" / "last.pt")
    for given in (run, run / "checkpoints"):
        with pytest.raises(MissingFileError) as err:
            read_checkpoint(given)
        assert str(err.value) == (
            f"checkpoint {given} is a directory; the checkpoint in it is "
            f"{run / 'checkpoints' / 'last.pt'}"
        )
    with pytest.raises(FileNotFoundError, match=f"checkpoint {tmp_path} is a directory, with no"):
        read_checkpoint(tmp_path)


def test_a_file_that_is_no_pytorch_file_is_one_error_naming_it(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("these are my notes, renamed .pt\n" * 20)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(text)
    message = str(err.value)
    assert message.startswith(f"checkpoint {text} is not a PyTorch file") and "\n" not in message
    assert isinstance(err.value, RuntimeError)  # as before: callers catching RuntimeError
    # torch's own error is not printed with it, but kept for a debugger
    assert err.value.__suppress_context__ and err.value.__context__ is not None
    cut = tmp_path / "cut.pt"
    torch.save({"w": torch.ones(100)}, cut)
    cut.write_bytes(cut.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a PyTorch file.*cut short"):
        read_checkpoint(cut)
