"""Whole-batch writes reach the kernel in pieces of at most WRITE_MAX, and nothing is lost between them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastgw.requestlog.file_writes import WRITE_MAX, write_all
from fastgw.requestlog.parking import ParkedStore


def test_write_all_writes_everything_in_bounded_calls_and_survives_short_writes(tmp_path: Path) -> None:
    data = os.urandom(3 * WRITE_MAX + 12345)
    sizes: list[int] = []
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        def short(chunk: memoryview) -> int:  # the kernel may take less than asked: 4,000 bytes here
            sizes.append(len(chunk))
            return os.write(fd, chunk[:4000] if len(sizes) % 3 == 0 else chunk)

        write_all(short, data, "f")
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == data
    assert max(sizes) == WRITE_MAX
    assert len(sizes) > -(-len(data) // WRITE_MAX)  # the short writes were written again from where they stopped
    with pytest.raises(OSError, match="short write to g"):
        write_all(lambda chunk: 0, b"x", "g")


def test_a_parked_batch_goes_to_the_kernel_in_bounded_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch is megabytes; written in one call, the P99 of requests sharing the exporter's core
    was several times higher with the sink down (see file_writes)."""
    records = [os.urandom(2000) for _ in range(2000)]  # about 4 MB
    sizes: list[int] = []
    real_write = os.write

    def counted(fd: int, chunk: bytes | memoryview) -> int:
        sizes.append(len(chunk))
        return real_write(fd, chunk)

    store = ParkedStore(str(tmp_path))
    monkeypatch.setattr(os, "write", counted)
    store.park(3, records)
    monkeypatch.undo()
    assert len(sizes) > 10 and max(sizes) <= WRITE_MAX
    (batch,) = ParkedStore(str(tmp_path)).read(10_000)
    assert (batch.worker, batch.records) == (3, records)


def test_a_jsonl_batch_goes_to_the_kernel_in_bounded_writes(tmp_path: Path) -> None:
    import orjson

    from fastgw.requestlog.sinks.base import SinkOptions
    from fastgw.requestlog.sinks.jsonl import JsonlSink

    sink = JsonlSink(tmp_path, SinkOptions())
    sink.open()
    sizes: list[int] = []
    real = sink._file
    assert real is not None

    class Counted:  # the sink's own file, each write's size noted
        def write(self, chunk: memoryview) -> int | None:
            sizes.append(len(chunk))
            return real.write(chunk)

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    sink._file = Counted()  # type: ignore[assignment]
    rows = [{"kind": "request", "request_id": f"r{i}", "response_body": "x" * 3000} for i in range(1000)]
    try:
        sink.write_prepared(sink.prepare(rows), "b1")
    finally:
        sink._file = real
        sink.close()
    assert len(sizes) > 10 and max(sizes) <= WRITE_MAX
    lines = (tmp_path / "requests.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["request_id"] for line in lines] == [f"r{i}" for i in range(1000)]
