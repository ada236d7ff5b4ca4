"""The ``jsonl:///dir`` sink: one JSON object per line, in size-rotated files.

For setups without ClickHouse, or to feed another pipeline (Vector, Fluent Bit, a data lake
loader): ``<dir>/requests.jsonl`` is the active file, ``requests.1.jsonl`` the newest rotated one
up to ``requests.<keep>.jsonl``; older files are deleted, so disk use is bounded by roughly
``(keep + 1) * max_bytes``. Each line is the record exactly as produced (feedback and score rows
keep their ``kind``), UUIDs and datetimes as strings, naive datetimes marked UTC.

Durability: a batch is written whole (in calls of at most ``file_writes.WRITE_MAX`` bytes) and
then fsynced before ``write`` returns, so a batch the exporter saw succeed survives a power cut.
A failed write is cut back off the file, so a retried batch never lands after a half-written line. Delivery is still at least once (a batch re-sent
after a crash appears twice): readers deduplicate on ``request_id``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from fastgw.requestlog.file_writes import write_all
from fastgw.requestlog.sinks.base import PreparedWrites, SinkError, SinkOptions

_OPTS = orjson.OPT_NAIVE_UTC | orjson.OPT_APPEND_NEWLINE


def _default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")  # bodies may arrive as raw bytes
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot serialize {type(value).__name__} to JSON")


def encode(rows: list[dict[str, Any]]) -> bytes:
    """The batch as newline-terminated JSON objects, built in memory: one buffer for ``write_all``."""
    dumps = orjson.dumps
    return b"".join([dumps(row, default=_default, option=_OPTS) for row in rows])


class JsonlSink(PreparedWrites):
    ACTIVE = "requests.jsonl"

    def __init__(self, directory: str | os.PathLike[str], options: SinkOptions | None = None) -> None:
        options = options or SinkOptions()
        self.directory = Path(directory)
        self.max_bytes = options.jsonl_max_bytes
        self.keep = options.jsonl_keep
        self.fsync = options.jsonl_fsync
        self._file: Any = None
        self._size = 0

    @property
    def active_path(self) -> Path:
        return self.directory / self.ACTIVE

    def rotated_path(self, n: int) -> Path:
        return self.directory / f"requests.{n}.jsonl"

    def open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._open_active()
        except OSError as exc:
            raise SinkError(f"jsonl sink cannot open {self.active_path}: {exc}") from exc

    def _open_active(self) -> None:
        # Append: a restart continues the active file instead of clobbering the last batches.
        self._file = open(self.active_path, "ab", buffering=0)
        self._size = self._file.seek(0, os.SEEK_END)

    def prepare(self, rows: list[dict[str, Any]]) -> bytes:
        return encode(rows)  # a TypeError here is the producer's bug, not a SinkError

    def write_prepared(self, data: bytes, batch_id: str) -> None:
        if not data:
            return
        if self._file is None:
            self.open()
        try:
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            start = self._size
            try:
                write_all(self._file.write, data, str(self.active_path))  # unbuffered: loops on short writes
                if self.fsync:
                    os.fsync(self._file.fileno())
            except OSError:
                self._truncate(start)
                raise
            self._size = start + len(data)
        except OSError as exc:
            raise SinkError(f"jsonl sink failed writing batch {batch_id} to {self.directory}: {exc}") from exc

    def _truncate(self, size: int) -> None:
        try:
            self._file.truncate(size)
            self._file.seek(size)
        except OSError:
            pass  # the disk is failing anyway; the retry's SinkError says so

    def _rotate(self) -> None:
        """active → .1 → .2 … → .keep (dropped beyond), then a fresh active file."""
        self._file.close()
        self._file = None
        if self.keep == 0:
            self.active_path.unlink(missing_ok=True)
        else:
            self.rotated_path(self.keep).unlink(missing_ok=True)
            for n in range(self.keep - 1, 0, -1):
                src = self.rotated_path(n)
                if src.exists():
                    src.rename(self.rotated_path(n + 1))
            self.active_path.rename(self.rotated_path(1))
        self._fsync_dir()  # make the renames as durable as the data
        self._open_active()

    def _fsync_dir(self) -> None:
        if not self.fsync:
            return
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None
