"""Test helper: read back what an offline wandb run recorded (no server, no wandb sync).

Not part of dcvq: the package only talks to wandb through its public API and never parses
wandb's private file format; the tests use this to check what a run actually recorded.
Loaded by the ``wandb_records`` fixture (tests/conftest.py). To list offline runs outside
the tests use wandb's own ``wandb sync --dry-run PATH...``.

wandb >= 0.2x writes an offline run as one binary ``run-<id>.wandb`` log (plus media files)
and ships no reader for it (the old ``datastore`` module and ``wandb sync --view`` are
gone). The log uses LevelDB's log framing with wandb's own file header:

* file header, 7 bytes: ``b":W&B"``, magic ``0xBEE1`` (uint16 LE), version ``0`` (uint8);
* then 32 KiB blocks (the first one includes the file header) of chunks, each a 7-byte
  header ``crc32 (uint32 LE), length (uint16 LE), type (uint8)`` followed by ``length``
  bytes. Type 1 is a whole record, 2/3/4 the first/middle/last piece of a record that
  spans blocks. A block tail too short for a chunk header is zero padding. The CRC is
  zlib's CRC-32 of the type byte followed by the payload;
* each reassembled record is a serialized ``wandb.proto.wandb_internal_pb2.Record``.

``WandbLogger.finish`` returns when wandb's ``Run.finish()`` does, which can be before
wandb's service has flushed the log's last block: read a run in the process that wrote
it only after :func:`wait_until_finished` (a finished process has flushed everything).
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_FILE_HEADER = struct.Struct("<4sHB")
_IDENT, _MAGIC, _VERSION = b":W&B", 0xBEE1, 0
_CHUNK_HEADER = struct.Struct("<IHB")
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_EXIT_WINDOW = 16  # records after the exit record that is_finished tolerates


class OfflineRunError(ValueError):
    """The file is not a wandb run log (bad header) or is corrupt before its end."""


@dataclass
class OfflineRun:
    """What one offline run recorded. ``config`` and ``summary`` are nested dicts as
    logged (wandb's internal ``_wandb`` entries are split off into ``internal_config``);
    ``history`` holds one dict per committed step, with ``_step`` in each row; a logged
    object such as a ``wandb.Histogram`` reads as its JSON form, e.g.
    ``{"_type": "histogram", "values": [...], "bins": [...]}``."""

    path: Path
    run_id: str = ""
    project: str = ""
    entity: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    internal_config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    # False when the log ends in a torn chunk (a killed writer): what came before is kept.
    complete: bool = True

    @property
    def finished(self) -> bool:
        """True when the run wrote its exit record (``finish()`` ran)."""
        return self.exit_code is not None

    def series(self, key: str) -> list[tuple[int, Any]]:
        """``(step, value)`` for every history row that has ``key``."""
        return [(row["_step"], row[key]) for row in self.history if key in row]


def iter_records(path: str | Path) -> Iterator[bytes]:
    """Yield the raw payload of each record in a ``.wandb`` log, in write order.

    Raises :class:`OfflineRunError` for a bad file header or a CRC mismatch; a log that
    simply stops mid-chunk (process killed while writing) ends the iteration quietly, the
    caller can tell from :func:`read_run`'s ``complete`` flag.
    """
    data = Path(path).read_bytes()
    _check_header(data, path)
    for payload in _scan(data, path):
        if payload is None:
            return
        yield payload


def _check_header(data: bytes, path: str | Path) -> None:
    if len(data) < _FILE_HEADER.size:
        raise OfflineRunError(f"{path}: too short for a wandb log header")
    ident, magic, version = _FILE_HEADER.unpack_from(data, 0)
    if ident != _IDENT or magic != _MAGIC or version != _VERSION:
        raise OfflineRunError(
            f"{path}: not a wandb run log (header {ident!r} {magic:#x} v{version})"
        )


def _scan(data: bytes, path: str | Path) -> Iterator[bytes | None]:
    """Chunk reassembly; yields None once if the file ends in a torn chunk."""
    pos = _FILE_HEADER.size
    pending: bytearray | None = None
    while pos < len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _CHUNK_HEADER.size:  # block trailer: zero padding
            pos += room
            continue
        if pos + _CHUNK_HEADER.size > len(data):
            yield None
            return
        crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        start = pos + _CHUNK_HEADER.size
        if kind == 0 and length == 0 and crc == 0:
            # Zero-filled rest of a block (a writer that pre-sized or padded it).
            pos += room
            continue
        if start + length > len(data):
            yield None
            return
        chunk = data[start : start + length]
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            raise OfflineRunError(f"{path}: CRC mismatch in chunk at byte {pos}")
        pos = start + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = bytearray(chunk)
        elif kind == _MIDDLE and pending is not None:
            pending += chunk
        elif kind == _LAST and pending is not None:
            yield bytes(pending + chunk)
            pending = None
        else:
            raise OfflineRunError(f"{path}: unexpected chunk type {kind} at byte {pos}")


def _keys(item: Any) -> list[str]:
    return list(item.nested_key) if len(item.nested_key) else [item.key]


def _set_nested(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        nxt = target.get(key)
        if not isinstance(nxt, dict):
            nxt = target[key] = {}
        target = nxt
    target[keys[-1]] = value


def _pop_nested(target: dict[str, Any], keys: list[str]) -> None:
    for key in keys[:-1]:
        target = target.get(key)  # type: ignore[assignment]
        if not isinstance(target, dict):
            return
    target.pop(keys[-1], None)


def _apply(target: dict[str, Any], update: Any, remove: Any) -> None:
    for item in update:
        _set_nested(target, _keys(item), json.loads(item.value_json))
    for item in remove:
        _pop_nested(target, _keys(item))


def read_run(path: str | Path) -> OfflineRun:
    """Decode a ``run-<id>.wandb`` file (or the ``offline-run-*`` dir holding it)."""
    # Imported here so that listing files (find_runs) works without importing wandb.
    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("run-*.wandb"))
        if not found:
            raise FileNotFoundError(f"no run-*.wandb file in {path}")
        path = found[0]
    run = OfflineRun(path=path)
    config: dict[str, Any] = {}
    data = path.read_bytes()
    _check_header(data, path)
    for payload in _scan(data, path):
        if payload is None:
            run.complete = False
            break
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.project, run.entity = r.run_id, r.project, r.entity
            run.name, run.group, run.job_type = r.display_name, r.run_group, r.job_type
            run.tags = list(r.tags)
            _apply(config, r.config.update, r.config.remove)
            _apply(run.summary, r.summary.update, r.summary.remove)
        elif kind == "config":
            _apply(config, record.config.update, record.config.remove)
        elif kind == "summary":
            _apply(run.summary, record.summary.update, record.summary.remove)
        elif kind == "history":
            # wandb splits dict-valued entries (histograms, media refs) into one item per
            # leaf with a nested key; rebuild them so row[key] is the logged object.
            row: dict[str, Any] = {}
            for item in record.history.item:
                _set_nested(row, _keys(item), json.loads(item.value_json))
            if "_step" not in row and record.history.HasField("step"):
                row["_step"] = record.history.step.num
            run.history.append(row)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    run.internal_config = config.pop("_wandb", {}) or {}
    run.config = config
    return run


def is_finished(path: str | Path) -> bool:
    """True once the log is complete: intact to its end, with the run's exit record.

    ``Run.finish()`` returns before wandb's service has flushed the log's last partial
    block (it only *informs* the service), so a reader in the same process must wait for
    this. The exit record is among the last few (wandb may append a couple of
    ``environment`` records after it); only those are decoded, so polling a long run's
    log stays cheap.
    """
    try:
        data = Path(path).read_bytes()
        _check_header(data, path)
        tail: deque[bytes] = deque(maxlen=_EXIT_WINDOW)
        for payload in _scan(data, path):
            if payload is None:
                return False
            tail.append(payload)
    except (OSError, OfflineRunError):
        return False
    from wandb.proto import wandb_internal_pb2 as pb

    for payload in reversed(tail):
        record = pb.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "exit":
            return True
    return False


def wait_until_finished(path: str | Path, timeout: float = 30.0, poll: float = 0.02) -> bool:
    """Poll :func:`is_finished` (re-checking only when the file grew) for up to
    ``timeout`` seconds; returns whether the log became complete."""
    deadline = time.monotonic() + timeout
    seen = -1
    while True:
        try:
            size = Path(path).stat().st_size
        except OSError:
            size = -1
        if size != seen:
            seen = size
            if is_finished(path):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def find_runs(directory: str | Path) -> list[Path]:
    """Every ``run-*.wandb`` file under ``directory``, oldest run first.

    wandb's ``latest-run`` symlinks are not followed, so each run appears once. Order:
    the run dir's start stamp (``offline-run-YYYYMMDD_HHMMSS-<id>``), then the file's
    modification time, which separates runs started within the same second.
    """
    found: list[Path] = []
    for root, _dirs, files in os.walk(directory, followlinks=False):
        found.extend(Path(root) / f for f in files if f.startswith("run-") and f.endswith(".wandb"))

    def order(p: Path) -> tuple[str, int, str]:
        stamp = p.parent.name.split("-run-")[-1].rsplit("-", 1)[0]
        return (stamp, p.stat().st_mtime_ns, str(p))

    return sorted(found, key=order)


def read_finished(path: str | Path, timeout: float = 30.0) -> OfflineRun:
    """:func:`read_run` once the log is complete, for a run finished in this process
    (see the module docstring); after ``timeout`` seconds, the run as it stands."""
    wait_until_finished(path, timeout=timeout)
    return read_run(path)
