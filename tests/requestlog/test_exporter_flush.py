"""The exporter's flush with the cyclic garbage collector paused (rows unchanged, collector restored),
and its pipeline: the next batch read and encoded while the sink thread writes the last."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from fastgw import config as config_mod
from fastgw.requestlog import exporter as exporter_module
from fastgw.requestlog.buffer import RecordBuffer, RecordDrain
from fastgw.requestlog.exporter import Exporter, _usable_cpus
from fastgw.requestlog.paths import LogPaths
from fastgw.requestlog.record import encode_record
from fastgw.requestlog.sinks import clickhouse
from fastgw.requestlog.sinks.clickhouse import ClickHouseSink

RING = 1 << 20


class GcProbe:
    """An observer: sees each committed batch, notes whether the collector was running then."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.gc_enabled: list[bool] = []

    def observe(self, rows: list[dict[str, Any]]) -> None:
        self.gc_enabled.append(gc.isenabled())
        self.rows.extend(rows)

    def close(self) -> None:
        pass


def setup(tmp_path: Path, sink: str, extra: str = "", **buffer: Any) -> tuple[Exporter, RecordBuffer, GcProbe]:
    cfg_file = tmp_path / "fastgw.yaml"
    cfg_file.write_text(f"logging: {{sink: '{sink}', run_dir: '{tmp_path / 'run'}', "
                        f"spill_dir: '{tmp_path / 'spill'}', ring_size: {buffer.get('ring', RING)}{extra}}}\n")
    cfg = config_mod.load(str(cfg_file))
    paths = LogPaths.for_config(cfg)
    buf = RecordBuffer(paths.ring_file(0), paths.spill_dir(0), buffer.pop("ring", RING), **buffer)
    exporter = Exporter(cfg, paths, 1)
    probe = GcProbe()
    exporter.observers = [*exporter.observers, probe]
    return exporter, buf, probe


def push(buf: RecordBuffer, n: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    for i, rid in enumerate(ids):
        meta = {"kind": "request", "request_id": rid, "created_at_ms": 1790000000000 + i, "provider": "openai",
                "format": "openai", "path": "/v1/chat/completions", "status": 200,
                "response_content_type": "application/json", "request_headers": "x-ok: 1\r\n"}
        body = orjson.dumps({"model": "gpt-4o-mini", "usage": {"prompt_tokens": 3, "completion_tokens": i}})
        buf.push(encode_record(meta, b'{"model":"gpt-4o-mini","messages":[]}', body))
    return ids


def test_rows_are_written_whole_while_the_collector_is_paused_and_it_runs_again_after(tmp_path: Path) -> None:
    exporter, buf, probe = setup(tmp_path, f"jsonl://{tmp_path / 'out'}")
    try:
        ids = push(buf, 300)
        exporter._attach_drains()
        assert gc.isenabled()
        assert exporter.flush_once() == 300
        assert gc.isenabled()
        assert probe.gc_enabled and not any(probe.gc_enabled)  # paused for the whole batch
        assert [r["request_id"] for r in probe.rows] == ids
        assert [r["completion_tokens"] for r in probe.rows] == list(range(300))
        assert written_ids(tmp_path / "out") == ids
    finally:
        exporter.close()
        buf.close()


def test_a_failing_sink_leaves_the_collector_running(tmp_path: Path) -> None:
    full = tmp_path / "full-disk"
    disk_full(full)
    exporter, buf, probe = setup(tmp_path, f"jsonl://{full}")
    try:
        push(buf, 5)
        exporter._attach_drains()
        assert exporter.flush_once() == 0 and exporter.stats.sink_failures == 1
        assert gc.isenabled() and probe.rows == []
        gc.disable()  # a caller that had paused it itself keeps it paused
        try:
            exporter.flush_once()
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        exporter.close()
        buf.close()


def test_a_batch_is_due_once_a_ring_is_half_full(tmp_path: Path) -> None:
    """Batches larger than a ring holds would otherwise wait for their age while the ring fills and spills."""
    exporter, buf, _ = setup(tmp_path, f"jsonl://{tmp_path / 'out'}", ", batch_max_records: 1000000, batch_max_age: 60")
    try:
        exporter._attach_drains()
        now = time.monotonic()
        assert not exporter._batch_due(now)
        push(buf, 100)
        assert buf.ring.used * 2 < RING and not exporter._batch_due(now)
        while buf.ring.used * 2 < RING:
            push(buf, 50)
        assert not buf.spilling
        assert exporter._batch_due(now)
        assert exporter._batch_due(now - 61)  # and by age, as before
    finally:
        exporter.close()
        buf.close()


# --- the pipeline: the next batch is read and encoded while the sink thread writes the last ---------

def written_ids(directory: Path) -> list[str]:
    """Request ids in the jsonl sink's files, oldest first (requests.N.jsonl, ..., requests.jsonl)."""
    rotated = sorted(directory.glob("requests.*.jsonl"), key=lambda f: -int(f.name.split(".")[1]))
    return [orjson.loads(line)["request_id"] for f in [*rotated, directory / "requests.jsonl"]
            for line in f.read_bytes().splitlines()]


def disk_full(directory: Path, exporter: Exporter | None = None) -> None:
    """The jsonl sink's file on /dev/full: every write fails with ENOSPC, a SinkError."""
    directory.mkdir(exist_ok=True)
    active = directory / "requests.jsonl"
    if active.exists():
        active.rename(directory / "requests.1.jsonl")
    active.symlink_to("/dev/full")
    if exporter is not None and exporter.sink is not None:
        exporter.sink.close()  # it reopens the file at its next write


def disk_back(directory: Path, exporter: Exporter) -> None:
    (directory / "requests.jsonl").unlink()
    assert exporter.sink is not None
    exporter.sink.close()


def test_step_commits_the_batch_before_and_leaves_the_next_in_flight(tmp_path: Path) -> None:
    exporter, buf, probe = setup(tmp_path, f"jsonl://{tmp_path / 'out'}", ", batch_max_records: 100")
    try:
        ids = push(buf, 250)
        exporter._attach_drains()
        drain = exporter.drains[0]
        assert exporter.step() == 0  # the first 100 are with the sink thread, not committed
        assert drain.exported == 0 and probe.rows == []
        assert exporter._waiting_records() == 150  # what is in flight is not waiting any more
        assert exporter.step() == 100  # read 100-199 ahead, then committed 0-99
        assert drain.exported == 100 and [r["request_id"] for r in probe.rows] == ids[:100]
        assert exporter.step() == 100 and exporter.step() == 50  # the last 50 were in flight
        assert exporter.step() == 0 and drain.exported == 250 and exporter._in_flight is None
        assert [r["request_id"] for r in probe.rows] == ids
        assert written_ids(tmp_path / "out") == ids
        assert exporter.stats.exported == 250 and exporter.stats.batches == 3
    finally:
        exporter.close()
        buf.close()


def test_a_failed_write_drops_the_batch_read_after_it_and_both_are_written_once_later(tmp_path: Path) -> None:
    out = tmp_path / "out"
    disk_full(out)
    exporter, buf, probe = setup(tmp_path, f"jsonl://{out}", ", batch_max_records: 100")
    try:
        ids = push(buf, 200)
        exporter._attach_drains()
        drain = exporter.drains[0]
        assert exporter.step() == 0  # 0-99 in flight (their write will fail)
        assert exporter.step() == 0  # read 100-199 ahead; the write of 0-99 failed: both dropped
        assert exporter.stats.sink_failures == 1 and exporter._in_flight is None
        assert drain.exported == 0 and drain.ring.tail == 0 and probe.rows == []
        assert exporter._waiting_records() == 200
        disk_back(out, exporter)
        while exporter.step() or exporter._in_flight is not None:
            pass
        assert drain.exported == 200 and exporter.stats.exported == 200
        assert written_ids(out) == ids  # each once, in order
        assert [r["request_id"] for r in probe.rows] == ids
    finally:
        exporter.close()
        buf.close()


def test_close_commits_the_batch_in_flight(tmp_path: Path) -> None:
    exporter, buf, _ = setup(tmp_path, f"jsonl://{tmp_path / 'out'}")
    ids = push(buf, 30)
    exporter._attach_drains()
    assert exporter.step() == 0 and exporter._in_flight is not None
    exporter.close()
    try:
        assert written_ids(tmp_path / "out") == ids and exporter.stats.exported == 30
        with RecordDrain(exporter.paths.ring_file(0), exporter.paths.spill_dir(0)) as again:
            assert again.exported == 30 and again.read_batch(100, 1 << 20).records == []
    finally:
        buf.close()


def test_a_chunk_the_sink_refuses_to_encode_is_written_row_by_row_and_the_bad_row_kept(tmp_path: Path) -> None:
    """The sink's prepare runs on the exporter's thread; a row it refuses (an unknown kind) fails
    the chunk's encoding, and the sink thread writes the rows one by one, rejecting only that one."""
    exporter, buf, probe = setup(tmp_path, f"chdb://{tmp_path / 'chdb'}")
    try:
        good = push(buf, 3)
        buf.push(encode_record({"kind": "bogus", "request_id": "not-a-row"}, b"", b""))
        good += push(buf, 3)
        exporter._attach_drains()
        assert exporter.flush_once() == 7  # committed: six stored, one kept for a human
        assert exporter.stats.rejected == 1 and exporter.drains[0].exported == 7
        kept = [orjson.loads(line) for line in Path(exporter.paths.rejected_file).read_bytes().splitlines()]
        assert [k["record"]["request_id"] for k in kept] == ["not-a-row"] and "bogus" in kept[0]["error"]
        assert exporter.sink is not None
        stored = exporter.sink.client.query("SELECT request_id FROM fastgw.requests")
        assert sorted(str(r[0]) for r in stored.result_rows) == sorted(good)
    finally:
        exporter.close()
        buf.close()


def test_advance_settles_each_batch_when_not_overlapping_or_while_the_sink_fails(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    exporter, buf, _ = setup(tmp_path, f"jsonl://{out}", ", batch_max_records: 100")
    try:
        push(buf, 450)
        exporter._attach_drains()
        exporter.pipelined = False  # one usable core
        assert exporter.advance() == 100 and exporter._in_flight is None
        exporter.pipelined = True
        assert exporter.advance() == 0 and exporter._in_flight is not None  # 100-199, in flight
        assert exporter.advance() == 100 and exporter._in_flight is not None  # 200-299 now
        assert exporter.settle() == 100 and exporter.drains[0].exported == 300
        disk_full(out, exporter)
        assert exporter.advance() == 0 and exporter._in_flight is not None  # 300-399 handed over
        # Its write failed: 400-449, read ahead meanwhile, are dropped with it.
        assert exporter.advance() == 0 and exporter.stats.sink_failures == 1 and exporter._in_flight is None
        # While the sink fails, each batch is settled at once: nothing is read ahead.
        assert exporter.advance() == 0 and exporter.stats.sink_failures == 2 and exporter._in_flight is None
        assert exporter.drains[0].exported == 300
    finally:
        exporter.close()
        buf.close()


def test_usable_cpus_is_the_affinity_capped_by_a_cgroup_quota(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    available = len(os.sched_getaffinity(0))
    for text, expected in (("max 100000\n", available), ("50000 100000\n", 1), ("100000 100000\n", 1),
                           ("150000 100000\n", min(available, 2)), ("garbage\n", available)):
        cpu_max.write_text(text)
        assert _usable_cpus(str(cpu_max)) == expected, text
    assert _usable_cpus(str(tmp_path / "no-such-file")) == available
    code = "from fastgw.requestlog.exporter import _usable_cpus; print(_usable_cpus('/nonexistent'))"
    first = sorted(os.sched_getaffinity(0))[0]
    pinned = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, {first}))
    assert int(pinned.stdout) == 1


def test_a_record_refused_in_a_batch_read_ahead_is_kept_once_however_often_it_is_read(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    exporter, buf, _ = setup(tmp_path, f"jsonl://{out}", ", batch_max_records: 10")
    try:
        ids = push(buf, 10)
        buf.push(b"not a record")  # the first record of the second batch
        ids += push(buf, 9)
        exporter._attach_drains()
        disk_full(out)
        assert exporter.advance() == 0  # the first batch in flight: its write fails
        assert exporter.advance() == 0 and exporter.stats.sink_failures == 1  # the second, read ahead: dropped
        for _ in range(3):  # failing: each batch is settled at once, nothing read ahead
            assert exporter.advance() == 0
        assert exporter.stats.rejected == 0 and not Path(exporter.paths.rejected_file).exists()
        disk_back(out, exporter)
        while exporter.advance() or exporter._in_flight is not None or exporter._backoff:
            pass
        assert exporter.drains[0].exported == 20 and written_ids(out) == ids
        kept = Path(exporter.paths.rejected_file).read_bytes().splitlines()
        assert len(kept) == 1 and exporter.stats.rejected == 1
        assert orjson.loads(kept[0])["record"]["raw"] == "not a record"
    finally:
        exporter.close()
        buf.close()


def test_a_stopping_exporter_retries_a_failing_sink_for_a_while(tmp_path: Path, monkeypatch: Any) -> None:
    out = tmp_path / "out"
    disk_full(out)
    exporter, buf, _ = setup(tmp_path, f"jsonl://{out}")
    monkeypatch.setattr(exporter_module, "STOP_SINK_PATIENCE", 1.5)
    try:
        ids = push(buf, 5)
        exporter._attach_drains()
        drain = exporter.drains[0]
        exporter.stopping = True
        started = time.monotonic()
        # SIGTERM's drain: retried for a while, then gives up, records kept on disk. ``loop``, not
        # ``run``, which would leave its SIGTERM and SIGINT handlers in pytest's process.
        exporter.loop()
        assert 1.5 <= time.monotonic() - started < 10
        assert exporter.stats.sink_failures >= 2 and exporter.stats.exported == 0
        # Given up: what the rings held is parked on disk (shared memory doesn't outlive a reboot).
        assert exporter.parked.pending == 1 and exporter.parked.parked == 5
        with RecordDrain(drain.ring.path, exporter.paths.spill_dir(0)) as again:
            assert again.exported == 5 and again.read_batch(100, 1 << 20).records == []
        (out / "requests.jsonl").unlink()  # the disk is back: the next exporter writes them first
        nxt = Exporter(exporter.config, exporter.paths, 1)
        try:
            nxt._attach_drains()
            assert nxt.parked.pending == 1 and nxt._batch_due(time.monotonic())
            assert nxt.flush_once() == 5 and nxt.parked.pending == 0 and nxt.parked.unparked == 5
            assert written_ids(out) == ids
            assert not list(Path(exporter.paths.parked_dir).iterdir())
        finally:
            nxt.close()
    finally:
        buf.close()


def test_while_the_sink_is_down_batches_are_parked_so_the_rings_stay_empty_and_nothing_spills(
        tmp_path: Path, monkeypatch: Any) -> None:
    """A ring of 1 MiB holds about 2,500 of these records; 6,000 are pushed while the sink is down.
    Without parking the ring fills and the worker spills (checked: push alone, no exporter)."""
    out = tmp_path / "out"
    out.write_bytes(b"")  # a file where the sink's folder goes: it can't open (as a server refusing)
    exporter, buf, _ = setup(tmp_path, f"jsonl://{out}", ", batch_max_records: 1000, batch_max_age: 50ms")
    monkeypatch.setattr(exporter_module, "STOP_SINK_PATIENCE", 0.5)

    ids: list[str] = []
    t = threading.Thread(target=exporter.loop)
    t.start()
    try:
        for _ in range(60):
            ids += push(buf, 100)
            time.sleep(0.02)
        deadline = time.monotonic() + 10
        while buf.ring.used and time.monotonic() < deadline:
            time.sleep(0.05)
        assert exporter.stats.sink_failures >= 1 and exporter.stats.exported == 0
        assert buf.spilled == 0 and buf.ring.used == 0
        assert exporter.parked.parked == 6000 and exporter.parked.pending >= 2
        # The sink comes back: the parked files go to it, oldest first, each record once.
        out.unlink()
        ids += push(buf, 100)  # behind the parked ones
        deadline = time.monotonic() + 40  # the back-off grows while the sink is down (0.1, 0.2, ...)
        while exporter.stats.exported < 6100 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        exporter.stopping = True
        t.join(60)
    assert not t.is_alive()
    # The last 100 are parked too (some or all) when they come before the sink's next try.
    assert exporter.stats.exported == 6100 and exporter.parked.pending == 0
    assert exporter.parked.unparked == exporter.parked.parked and 6000 <= exporter.parked.parked <= 6100
    written = written_ids(out)
    assert len(written) == 6100 and sorted(written) == sorted(ids)
    assert written[:6000] == ids[:6000]  # what was parked before the sink came back: in its order
    buf.close()


def test_after_the_sink_comes_back_parked_files_and_the_rings_take_turns_so_nothing_spills(tmp_path: Path) -> None:
    """8,000 records parked; then traffic goes on, 500 records a batch delivered, into a ring that
    holds about 2,500. Parked files first, until the last one, would fill it (a review saw 1,270
    spilled by the seventh batch)."""
    out = tmp_path / "out"
    out.write_bytes(b"")  # the sink can't open
    exporter, buf, _ = setup(tmp_path, f"jsonl://{out}", ", batch_max_records: 1000")
    try:
        exporter._attach_drains()
        ids: list[str] = []
        for _ in range(8):
            ids += push(buf, 1000)
            assert exporter.park() == 1000
        out.unlink()  # the sink is back
        exporter._backoff = 0.0
        parked_left, ring_used = [], []
        for _ in range(12):
            ids += push(buf, 500)
            assert exporter.flush_once() > 0
            parked_left.append(exporter.parked.pending_records)
            ring_used.append(buf.ring.used)
        assert buf.spilled == 0
        # Turns: parked (7,000 left), the ring (emptied), parked (6,000 left), the ring, ...
        assert parked_left[:4] == [7000, 7000, 6000, 6000] and ring_used[1] == 0 and ring_used[3] == 0
        while exporter.flush_once():
            pass
        written = written_ids(out)
        assert len(written) == len(ids) == 14000 and sorted(written) == sorted(ids)
        assert exporter.parked.pending == 0 and exporter.parked.unparked == 8000
    finally:
        exporter.close()
        buf.close()


def test_a_stop_comes_through_a_long_back_off_at_once(tmp_path: Path, monkeypatch: Any) -> None:
    """Between tries the loop parks in short naps, so a SIGTERM during a 30 s back-off is seen at
    once: the stop takes the stop's own patience with the sink, not the rest of the back-off."""
    out = tmp_path / "out"
    out.write_bytes(b"")  # the sink can't open
    exporter, buf, _ = setup(tmp_path, f"jsonl://{out}")
    monkeypatch.setattr(exporter_module, "STOP_SINK_PATIENCE", 0.5)
    monkeypatch.setattr(exporter_module, "MAX_BACKOFF", 30.0)
    exporter._backoff = 15.0  # as after many failures: the next one waits 30 s
    t = threading.Thread(target=exporter.loop)
    t.start()
    try:
        ids = push(buf, 20)
        deadline = time.monotonic() + 10
        while exporter._retry_at - time.monotonic() < 25 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert exporter._backoff == 30.0 and exporter.stats.sink_failures == 1
    finally:
        exporter.stopping = True
        started = time.monotonic()
        t.join(60)
    assert time.monotonic() - started < 5 and not t.is_alive()
    assert exporter.parked.parked == 20 and buf.spilled == 0
    out.unlink()
    nxt = Exporter(exporter.config, exporter.paths, 1)
    try:
        assert nxt.flush_once() == 20 and written_ids(out) == ids
    finally:
        nxt.close()
        buf.close()


def test_without_an_exporter_the_same_pushes_spill(tmp_path: Path) -> None:
    """The control for the test above: the same ring and records do spill when nobody drains them."""
    exporter, buf, _ = setup(tmp_path, f"jsonl://{tmp_path / 'out'}")
    try:
        push(buf, 6000)
        assert buf.spilled > 0
    finally:
        exporter.close()
        buf.close()


def test_a_park_that_fails_leaves_the_records_in_the_rings(tmp_path: Path) -> None:
    out = tmp_path / "out"
    disk_full(out)
    exporter, buf, _ = setup(tmp_path, f"jsonl://{out}", ", batch_max_records: 100")
    try:
        ids = push(buf, 150)
        exporter._attach_drains()
        drain = exporter.drains[0]
        assert exporter.flush_once() == 0 and exporter.stats.sink_failures == 1 and exporter._in_flight is None
        parked_dir = Path(exporter.paths.parked_dir)
        parked_dir.rmdir()
        parked_dir.write_bytes(b"")  # a file where the folder was: no parked file can be made (root too)
        try:
            assert exporter.park() == 0 and exporter.stats.park_failures == 1
        finally:
            parked_dir.unlink()
            parked_dir.mkdir()
        assert drain.exported == 0 and exporter.parked.pending == 0
        assert exporter.park() == 100 and exporter.park() == 50 and drain.exported == 150
        assert sorted(f.name for f in parked_dir.iterdir()) == ["parked-000000000001.wal", "parked-000000000002.wal"]
        disk_back(out, exporter)
        assert exporter.flush_once() == 100 and exporter.flush_once() == 50 and exporter.flush_once() == 0
        assert not list(parked_dir.iterdir())
        assert written_ids(out) == ids
    finally:
        exporter.close()
        buf.close()


def test_a_short_batch_that_ends_a_spill_segment_makes_the_next_due_at_once(tmp_path: Path) -> None:
    """Spill files are not counted as waiting: without this, each segment would wait for the age."""
    exporter, buf, _ = setup(tmp_path, f"jsonl://{tmp_path / 'out'}", ", batch_max_records: 1000, batch_max_age: 60",
                             ring=65536, segment_bytes=20_000)
    try:
        ids = push(buf, 600)  # ~330 bytes each: most of them spill, into segments of ~60
        assert buf.spilled > 300
        exporter._attach_drains()
        turns = 0
        while exporter._batch_due(time.monotonic()) or exporter._in_flight is not None:
            exporter.advance()
            turns += 1
            assert turns < 100
        assert exporter.drains[0].exported == 600 and written_ids(tmp_path / "out") == ids
        assert exporter.drains[0].replayed == buf.spilled
    finally:
        exporter.close()
        buf.close()


@contextmanager
def chdb_backlog(tmp_path: Path, records: int) -> Iterator[tuple[Exporter, ClickHouseSink, list[str]]]:
    """An exporter into chDB in batches of 40, ``records`` waiting in its ring, one batch written."""
    exporter, buf, _ = setup(tmp_path, f"chdb://{tmp_path / 'ch'}", ", batch_max_records: 40")
    try:
        ids = push(buf, records)
        exporter._attach_drains()
        assert exporter.flush_once() == 40
        assert isinstance(exporter.sink, ClickHouseSink)
        yield exporter, exporter.sink, ids
    finally:
        exporter.close()
        buf.close()


def _query(sink: ClickHouseSink, sql: str) -> Any:
    return sink.client.query(sql).result_rows[0][0]


def _active_parts(sink: ClickHouseSink) -> int:
    return _query(sink, "SELECT count() FROM system.parts WHERE active AND database = 'fastgw' AND table = 'requests'")


def test_chdb_merges_wait_while_a_backlog_is_exported_and_run_once_it_is_gone(tmp_path: Path) -> None:
    """Full batches (a backlog): merges stopped, parts stay apart. A turn that finds nothing (the
    loop's turn once a second): merges start again and the parts merge."""
    with chdb_backlog(tmp_path, 400) as (exporter, sink, _):
        for _ in range(9):
            assert exporter.flush_once() == 40
        assert sink.defer_merges and sink._merges_stopped
        with pytest.raises(Exception, match="ABORTED"):  # chDB refuses to merge them now
            sink.client.command("OPTIMIZE TABLE fastgw.requests FINAL")
        assert _active_parts(sink) >= 10
        assert exporter.flush_once() == 0  # caught up: a turn with nothing to read or write
        assert not sink.defer_merges and not sink._merges_stopped
        deadline = time.monotonic() + 60
        while _active_parts(sink) > 3:
            assert time.monotonic() < deadline, _active_parts(sink)
            time.sleep(0.2)


def test_merges_are_not_deferred_over_a_pile_of_parts(tmp_path: Path, monkeypatch: Any) -> None:
    """Over MAX_DEFERRED_PARTS in a partition merges run, whatever the backlog: stopped ones start."""
    monkeypatch.setattr(clickhouse, "PARTS_CHECK_EVERY", 0.0)
    with chdb_backlog(tmp_path, 400) as (exporter, sink, _):
        for _ in range(5):
            assert exporter.flush_once() == 40
        assert sink._merges_stopped and _active_parts(sink) >= 6  # a backlog: merges wait
        assert not sink._too_many_parts()
        monkeypatch.setattr(clickhouse, "MAX_DEFERRED_PARTS", 4)
        assert sink._too_many_parts()
        assert exporter.flush_once() == 40  # still behind: the exporter wants them deferred ...
        assert sink.defer_merges and not sink._merges_stopped  # ... yet they run


def test_a_write_refused_for_too_many_parts_starts_merges_and_loses_nothing(tmp_path: Path) -> None:
    """chDB itself refuses the insert (TOO_MANY_PARTS, with the table's limit lowered to 3): merges
    don't stay stopped through the back-off, and the batch is written once they have run."""
    with chdb_backlog(tmp_path, 200) as (exporter, sink, ids):
        assert exporter.flush_once() == 40
        assert sink._merges_stopped and _active_parts(sink) == 2
        sink.client.command("ALTER TABLE fastgw.requests MODIFY SETTING parts_to_delay_insert = 2, "
                            "parts_to_throw_insert = 3")
        assert exporter.flush_once() == 40  # the third part
        assert exporter.flush_once() == 0  # the fourth: refused
        assert exporter.stats.sink_failures == 1 and not sink._merges_stopped
        sink.client.command("OPTIMIZE TABLE fastgw.requests FINAL")  # allowed again: what merges do in time
        sink.client.command("ALTER TABLE fastgw.requests MODIFY SETTING parts_to_delay_insert = 1000, "
                            "parts_to_throw_insert = 3000")
        while exporter.flush_once():
            pass
        assert exporter.stats.exported == 200
        assert _query(sink, "SELECT count() FROM fastgw.requests FINAL") == 200
        assert _query(sink, "SELECT uniqExact(request_id) FROM fastgw.requests") == len(set(ids)) == 200


@contextmanager
def metrics_only(tmp_path: Path, extra: str = "", **buffer: Any) -> Iterator[tuple[Exporter, RecordBuffer]]:
    """An exporter into chDB whose only observer is its metrics: its chunks come as metric totals,
    with no rows kept, however small they are (prepare_part, in pieces)."""
    exporter, buf, probe = setup(tmp_path, f"chdb://{tmp_path / 'chdb'}", extra, **buffer)
    exporter.observers = [o for o in exporter.observers if o is not probe]
    assert exporter.metrics is not None and exporter.observers == [exporter.metrics]
    try:
        yield exporter, buf
    finally:
        exporter.close()
        buf.close()


def _stored(exporter: Exporter) -> list[str]:
    assert isinstance(exporter.sink, ClickHouseSink)
    rows = exporter.sink.client.query("SELECT request_id FROM fastgw.requests").result_rows
    return sorted(str(r[0]) for r in rows)


def test_a_small_chunk_with_only_the_metrics_observing_keeps_its_bad_record_and_counts_the_rest(tmp_path: Path) -> None:
    with metrics_only(tmp_path) as (exporter, buf):
        good = push(buf, 3)
        buf.push(encode_record({"kind": "bogus", "request_id": "not-a-row"}, b"", b""))  # the encoder refuses it
        good += push(buf, 3)
        exporter._attach_drains()
        assert exporter.flush_once() == 7
        assert exporter.stats.rejected == 1 and "not-a-row" in Path(exporter.paths.rejected_file).read_text()
        assert _stored(exporter) == sorted(good)
        assert sum(exporter.metrics.totals.requests.values()) == 6
        assert exporter.stats.observer_failures == 0


def test_a_chunk_refused_at_insert_is_enriched_again_from_its_records_with_the_price_file_broken(
        tmp_path: Path) -> None:
    """The chunk came without rows (metrics only), so when ClickHouse refuses it (here a CHECK
    constraint one row breaks) the sink thread enriches its records again to write them one by
    one. The price file broke after the start: the last good table prices them, as it does for
    the exporter. Every other row is stored once, and the one ClickHouse refuses is kept."""
    prices = tmp_path / "prices.yaml"
    prices.write_text("{}\n")
    with metrics_only(tmp_path, f", prices_file: '{prices}'") as (exporter, buf):
        ids = push(buf, 20)  # completion_tokens = 0 .. 19
        exporter._attach_drains()
        assert exporter._open_sink()
        assert isinstance(exporter.sink, ClickHouseSink)
        exporter.sink.client.command("ALTER TABLE fastgw.requests ADD CONSTRAINT not_seven CHECK completion_tokens != 7")
        prices.write_text("{{{ not yaml")
        assert exporter.flush_once() == 20
        assert _stored(exporter) == sorted(ids[:7] + ids[8:])
        assert exporter.stats.rejected == 1
        kept = Path(exporter.paths.rejected_file).read_text()
        assert ids[7] in kept and "not_seven" in kept
        assert sum(exporter.metrics.totals.requests.values()) == 20  # counted as prepared, as rows are


def test_a_chunk_comes_in_the_same_blocks_whatever_the_helper_count(tmp_path: Path) -> None:
    """ClickHouse drops a repeated deduplication token only when the insert has as many blocks: a
    chunk written again after a restart on a machine with more or fewer cores (another helper
    count) must be cut the same way. Here by none, one and two helpers, all of them ready."""
    metas = [{"kind": "request", "request_id": str(uuid.UUID(int=i + 1)), "created_at_ms": 1790000000000 + i,
              "provider": "openai", "format": "openai", "path": "/v1/chat/completions", "status": 200,
              "response_content_type": "application/json", "request_headers": "x-ok: 1\r\n"} for i in range(2600)]
    raws = [encode_record(m, b'{"model":"gpt-4o-mini","messages":[]}',
                          orjson.dumps({"model": "gpt-4o-mini", "usage": {"prompt_tokens": 3, "completion_tokens": i}}))
            for i, m in enumerate(metas)]
    raws[1234] = b"not a record"
    seen = []
    for helpers in (0, 1, 2):
        folder = tmp_path / f"h{helpers}"
        folder.mkdir()
        with metrics_only(folder, f", batch_max_records: 2600, exporter_helpers: {helpers}", ring=8 << 20) as (exporter, buf):
            for raw in raws:
                buf.push(raw)
            exporter._attach_drains()
            assert exporter._open_sink()
            if helpers:
                exporter._read_next()  # the first large chunk starts the helpers
                exporter._in_flight = None
                assert exporter.helpers is not None
                deadline = time.monotonic() + 60
                while exporter.helpers.usable() < helpers:
                    assert time.monotonic() < deadline, "the prepare helpers did not start"
                    time.sleep(0.05)
            parts_before = exporter.helpers.parts if exporter.helpers else 0
            flight = exporter._read_next()
            assert flight is not None
            assert (exporter.helpers.parts if exporter.helpers else 0) - parts_before == helpers  # they took part
            seen.append([(c.batch_id, c.count, [(t.name, data) for t, data in c.prepared.tables])
                         for c in flight.chunks])
            exporter._in_flight = None
    assert seen[0] == seen[1] == seen[2]
    assert seen[0][0][1] == 2599


def test_at_rest_the_loop_looks_at_the_rings_five_times_a_second_and_fifty_while_records_wait(tmp_path: Path) -> None:
    """Nothing in the rings: a look every IDLE_SLEEP_EMPTY (0.2 s), not every IDLE_SLEEP (20 ms), which
    cost a resting exporter about 7 ms of CPU a second. Records waiting for their batch: every 20 ms
    again, so a batch's worth is seen before its age. Each record exported once, at the stop."""
    exporter, buf, probe = setup(tmp_path, f"jsonl://{tmp_path / 'out'}", ", batch_max_records: 1000, batch_max_age: 60")
    t = threading.Thread(target=exporter.loop)
    t.start()
    try:
        time.sleep(0.3)  # attached, the first empty looks done
        before = exporter.stats.idle_waits
        time.sleep(2.0)
        at_rest = exporter.stats.idle_waits - before
        ids = push(buf, 10)  # fewer than a batch, long before its age: they wait
        time.sleep(0.3)  # the next look (0.2 s at most) sees them
        before = exporter.stats.idle_waits
        time.sleep(1.0)
        waiting = exporter.stats.idle_waits - before
        assert exporter.stats.exported == 0
    finally:
        exporter.stopping = True
        t.join(10)
    assert not t.is_alive()
    assert 5 <= at_rest <= 12, at_rest  # 2 s at rest: about 10 looks (100 at IDLE_SLEEP)
    assert waiting >= 25, waiting  # 1 s with records waiting: about 50
    assert sorted(r["request_id"] for r in probe.rows) == sorted(ids)
