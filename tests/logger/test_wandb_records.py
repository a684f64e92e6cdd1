"""The tests' reader of wandb's offline run files (wandb_records.py), on logs written
here byte by byte (no wandb service).

A small writer below frames payloads the way wandb does (LevelDB log blocks); the real
wandb-written files are read back in test_wandb.py.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@pytest.fixture
def wr(wandb_records):
    """The reader under test: tests/logger/wandb_records.py, via the conftest fixture."""
    return wandb_records


def frame(payloads: list[bytes]) -> bytes:
    """wandb's framing: file header, then chunks that never cross a 32 KiB block."""
    out = bytearray(struct.pack("<4sHB", b":W&B", 0xBEE1, 0))
    for payload in payloads:
        rest, first = payload, True
        while True:
            room = BLOCK - len(out) % BLOCK
            if room < 7:
                out += b"\0" * room
                continue
            take = min(len(rest), room - 7)
            last = take == len(rest)
            kind = FULL if first and last else FIRST if first else LAST if last else MIDDLE
            chunk, rest, first = rest[:take], rest[take:], False
            crc = zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF
            out += struct.pack("<IHB", crc, take, kind) + chunk
            if last:
                break
    return bytes(out)


def _item(cls, keys: list[str], value) -> object:
    item = cls(value_json=json.dumps(value))
    if len(keys) == 1:
        item.key = keys[0]
    else:
        item.nested_key.extend(keys)
    return item


def records() -> list[bytes]:
    """A small run as wandb records it: run, config, history, summary, exit."""
    run = pb.Record()
    run.run.run_id, run.run.project, run.run.entity = "abc123", "dcvq", "me"
    run.run.run_group, run.run.job_type, run.run.display_name = "sweep-1", "dual", "dual-n1024"
    run.run.tags.extend(["a", "b"])
    run.run.config.update.extend(
        [
            _item(pb.ConfigItem, ["_wandb"], {}),
            _item(pb.ConfigItem, ["codebook"], {"size": 1024}),
            _item(pb.ConfigItem, ["lr"], 1e-4),
            _item(pb.ConfigItem, ["dropme"], 1),
        ]
    )
    config = pb.Record()
    config.config.update.append(_item(pb.ConfigItem, ["resumed_from_step"], 0))
    config.config.remove.append(pb.ConfigItem(key="dropme"))

    rows = []
    for step, loss in ((1, 2.0), (3, 1.0)):
        rec = pb.Record()
        rec.history.item.extend(
            [
                _item(pb.HistoryItem, ["train/loss"], loss),
                _item(pb.HistoryItem, ["_step"], step),
            ]
        )
        rec.history.step.num = step
        rows.append(rec)
    hist = pb.Record()  # a histogram arrives as one item per leaf; and no _step item
    hist.history.item.extend(
        [
            _item(pb.HistoryItem, ["usage/global_hist", "_type"], "histogram"),
            _item(pb.HistoryItem, ["usage/global_hist", "values"], [1, 2]),
            _item(pb.HistoryItem, ["usage/global_hist", "bins"], [0, 512, 1024]),
            _item(pb.HistoryItem, ["big"], "y" * 80_000),  # spans three blocks
        ]
    )
    hist.history.step.num = 5
    summary = pb.Record()
    summary.summary.update.extend(
        [
            _item(pb.SummaryItem, ["train/loss"], 1.0),
            _item(pb.SummaryItem, ["_wandb", "runtime"], 3),
            _item(pb.SummaryItem, ["gone"], 1),
        ]
    )
    summary.summary.remove.append(pb.SummaryItem(key="gone"))
    exit_ = pb.Record()
    exit_.exit.exit_code = 0
    return [r.SerializeToString() for r in (run, config, *rows, hist, summary, exit_)]


@pytest.mark.parametrize(
    "payloads",
    [
        # 7 (file header) + 7 + 32737 leaves 17 bytes; 7 + 5 leaves a 5-byte trailer
        # (padding); then one payload fills a block exactly; an empty one; one spanning
        # four blocks (first, middle, middle, last).
        [b"a" * 32737, b"b" * 5, b"c" * (BLOCK - 7), b"", b"e" * 100_000, b"f"],
        # An empty record leaves exactly 7 bytes: room for a header with no data, so the
        # next record starts with a zero-length first chunk (as LevelDB writers do).
        [b"a" * (BLOCK - 28), b"", b"c" * 10, b"d"],
    ],
)
def test_framing_roundtrip_across_blocks_and_trailers(wr, tmp_path, payloads):
    path = tmp_path / "run-x.wandb"
    path.write_bytes(frame(payloads))
    assert list(wr.iter_records(path)) == payloads


def test_read_run_decodes_config_history_summary(wr, tmp_path):
    path = tmp_path / "run-abc123.wandb"
    path.write_bytes(frame(records()))
    run = wr.read_run(path)
    assert (run.run_id, run.project, run.entity) == ("abc123", "dcvq", "me")
    assert (run.group, run.job_type, run.name) == ("sweep-1", "dual", "dual-n1024")
    assert run.tags == ["a", "b"]
    assert run.config == {"codebook": {"size": 1024}, "lr": 1e-4, "resumed_from_step": 0}
    assert run.internal_config == {}
    assert [row["_step"] for row in run.history] == [1, 3, 5]
    assert run.series("train/loss") == [(1, 2.0), (3, 1.0)]
    assert run.history[2]["usage/global_hist"] == {
        "_type": "histogram",
        "values": [1, 2],
        "bins": [0, 512, 1024],
    }
    assert run.history[2]["big"] == "y" * 80_000
    assert run.summary == {"train/loss": 1.0, "_wandb": {"runtime": 3}}
    assert run.finished and run.exit_code == 0 and run.complete
    assert wr.read_run(tmp_path).run_id == "abc123"  # the run dir works too
    assert wr.is_finished(path)


def test_torn_tail_keeps_what_came_before(wr, tmp_path):
    data = frame(records())
    path = tmp_path / "run-abc123.wandb"
    path.write_bytes(data[:-3])  # killed mid-write: the exit record is cut
    run = wr.read_run(path)
    assert not run.complete and not run.finished
    assert [row["_step"] for row in run.history] == [1, 3, 5]
    assert not wr.is_finished(path)
    assert not wr.wait_until_finished(path, timeout=0.05)


def test_unfinished_log_is_not_finished(wr, tmp_path):
    path = tmp_path / "run-abc123.wandb"
    path.write_bytes(frame(records()[:-1]))  # no exit record yet
    assert wr.read_run(path).complete and not wr.is_finished(path)


def test_records_after_the_exit_record_still_count_as_finished(wr, tmp_path):
    # wandb may append environment records after the exit record.
    env = pb.Record()
    env.environment.os = "Linux"
    path = tmp_path / "run-abc123.wandb"
    path.write_bytes(frame([*records(), env.SerializeToString(), env.SerializeToString()]))
    assert wr.is_finished(path) and wr.read_run(path).finished


def test_bad_files_are_refused(wr, tmp_path):
    bad = tmp_path / "run-bad.wandb"
    bad.write_bytes(b"not a wandb log at all")
    with pytest.raises(wr.OfflineRunError, match="not a wandb run log"):
        wr.read_run(bad)
    data = bytearray(frame(records()))
    data[40] ^= 0xFF  # flip a byte inside the first record
    bad.write_bytes(bytes(data))
    with pytest.raises(wr.OfflineRunError, match="CRC mismatch"):
        wr.read_run(bad)
    assert not wr.is_finished(bad)


def _run_file(root: Path, stamp: str, run_id: str) -> Path:
    d = root / "wandb" / f"offline-run-{stamp}-{run_id}"
    d.mkdir(parents=True)
    path = d / f"run-{run_id}.wandb"
    path.write_bytes(frame(records()))
    return path


def test_find_runs_orders_by_start_and_skips_symlinks(wr, tmp_path):
    later = _run_file(tmp_path, "20260102_000000", "aaaa")
    earlier = _run_file(tmp_path, "20260101_000000", "zzzz")
    (tmp_path / "wandb" / "latest-run").symlink_to(later.parent, target_is_directory=True)
    (tmp_path / "wandb" / "debug.log").write_text("")
    assert wr.find_runs(tmp_path) == [earlier, later]
    assert wr.find_runs(tmp_path / "nothing-here") == []
