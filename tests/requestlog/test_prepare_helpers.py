"""Prepare helpers (requestlog/prepare_helpers.py): parts of a large chunk are decoded, enriched and
encoded in other processes, with the same result as in the exporter, and nothing is lost or
doubled when a helper dies, hangs, or its exporter is killed."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from fastgw import config as config_mod
from fastgw.analytics.metrics import LabelCap, fold_rows, raw_label
from fastgw.app import context_from_raw
from fastgw.config import ProviderConfig
from fastgw.providers.table import Provider
from fastgw.requestlog import exporter as exporter_module
from fastgw.requestlog import prepare_helpers
from fastgw.requestlog.buffer import RecordBuffer
from fastgw.requestlog.enrich import Enricher
from fastgw.requestlog.exporter import Exporter, _batch_id
from fastgw.requestlog.paths import LogPaths
from fastgw.requestlog.prepare_helpers import PrepareHelpers, prepare_part
from fastgw.requestlog.prices import PriceTable
from fastgw.requestlog.record import decode_record, encode_record, pack_record
from fastgw.requestlog.sinks.clickhouse import encode_native

MODELS = ("gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5", "no-such-model")


def record(i: int) -> bytes:
    """Every fourth a stream whose usage came in the hidden chunk; some errors; an unknown model."""
    model = MODELS[i % len(MODELS)]
    meta: dict[str, Any] = {
        "kind": "request", "request_id": str(uuid.uuid4()), "created_at_ms": 1790000000000 + i,
        "provider": "anthropic" if model.startswith("claude") else "openai", "format": "openai",
        "path": "/v1/chat/completions", "status": 500 if i % 7 == 0 else 200, "total_us": 1000 + i,
        "ttfb_us": 500, "gateway_us": 40 + i % 9, "error_type": "upstream_error" if i % 7 == 0 else "",
        "response_content_type": "text/event-stream" if i % 4 == 3 else "application/json",
        "request_headers": "x-ok: 1\r\nauthorization: [redacted]\r\n", "properties": {"team": f"t{i % 3}"},
        "retry_count": i % 2, "fallback_index": 0 if i % 5 == 0 else -1,
    }
    request = orjson.dumps({"model": model, "messages": [{"role": "user", "content": f"question {i}"}]})
    usage = {"prompt_tokens": 10 + i, "completion_tokens": i % 50}
    if i % 4 == 3:
        meta["hidden_usage"] = "data: " + orjson.dumps({"model": model, "choices": [], "usage": usage}).decode() + "\n\n"
        response = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'
    else:
        response = orjson.dumps({"model": model, "choices": [{"message": {"content": "hi"}}], "usage": usage})
    if i % 2:  # half of them packed as a worker packs them, half JSON (events, older versions)
        return packed(i, meta, request, response)
    return encode_record(meta, request, response)


_ORIGINS = {name: Provider.from_config(name, ProviderConfig(base_url="https://api.test")) for name in ("openai", "anthropic")}


def packed(i: int, meta: dict[str, Any], request: bytes, response: bytes) -> bytes:
    """The same request as ``meta`` says, through the worker's own pack_record."""
    raw = [(b"host", b"h"), (b"x-ok", b"1"), (b"authorization", b"Bearer sk-x"),
           (b"helicone-property-team", meta["properties"]["team"].encode()),
           (b"helicone-request-id", meta["request_id"].encode())]
    ctx = context_from_raw(b"POST", meta["path"].encode(), raw, request, time.perf_counter_ns() - 1_000_000)
    ctx.created_ms = meta["created_at_ms"]
    ctx.provider, ctx.upstream_path = _ORIGINS[meta["provider"]], meta["path"].encode()
    ctx.unified = {} if meta["provider"] == "anthropic" else None  # answered in OpenAI's format
    ctx.retry_count, ctx.fallback_index = meta["retry_count"], meta["fallback_index"]
    ctx.hidden_usage = meta.get("hidden_usage", "").encode()
    return pack_record(
        ctx, status=meta["status"], error=(meta["error_type"], "") if meta["error_type"] else None,
        response_body=response, response_truncated=False, response_content_type=meta["response_content_type"],
        t_first_byte=ctx.t_start + 500_000, client_left=False, body_limit=1 << 20, omit_request=False,
        omit_response=False, worker=0,
    )


# Unreadable records of both kinds: a JSON meta that isn't JSON, a packed meta cut short.
GARBAGE = (b"\x05\x00\x00\x00garbage", b"\x05\x00\x00\x80" + bytes(8) + b"garbage")


def records(n: int, broken: tuple[int, ...] = ()) -> list[bytes]:
    return [GARBAGE[i % 2] if i in broken else record(i) for i in range(n)]


def ready(helpers: PrepareHelpers, want: int = 1, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while helpers.usable() < want:
        assert time.monotonic() < deadline, "no prepare helper became ready"
        time.sleep(0.05)


def totals_dicts(t: Any) -> dict[str, Any]:
    return {"requests": t.requests, "usage": t.usage, "errors": t.errors, "refusals": t.refusals,
            "retries": t.retries, "fallbacks": t.fallbacks, "latency": t.latency.series,
            "ttfb": t.ttfb.series, "overhead": t.overhead.series}


def test_a_helper_prepares_a_part_as_the_exporter_would() -> None:
    raws = records(300, broken=(7, 120))
    mine = prepare_part(Enricher(PriceTable.load(None)), raws, encode_native, True)
    helpers = PrepareHelpers(1, None, encode_native, True)
    try:
        ready(helpers)
        pid = helpers.pids[0]
        assert Path(f"/proc/{pid}/comm").read_text() == "fastgw-helper\n"  # as top and pgrep show it
        [theirs], own = helpers.prepare([raws], lambda: "the exporter's part")
        assert own == "the exporter's part"
        assert theirs is not None and helpers.parts == 1 and helpers.failures == 0
        assert theirs.count == mine.count == 298
        assert theirs.encoded == mine.encoded  # the same Native blocks, byte for byte
        assert theirs.ids == mine.ids
        assert [i for i, _ in theirs.rejected] == [i for i, _ in mine.rejected] == [7, 120]
        assert (theirs.counted, theirs.unpriced, theirs.unknown) == (mine.counted, mine.unpriced, mine.unknown)
        assert theirs.unknown == {"no-such-model": 74}  # counted where it was priced, handed back
        assert totals_dicts(theirs.totals) == totals_dicts(mine.totals)
    finally:
        helpers.close()
    assert not os.path.exists(f"/proc/{pid}")  # reaped


def test_a_part_prepared_in_pieces_equals_its_records_prepared_whole() -> None:
    """prepare_part lets each piece of PIECE records go before the next: the encoding is the pieces'
    blocks in record order, and the ids, metric totals, counts and rejected indexes are those of
    the whole list, with unreadable records in the first, a middle and the last piece."""
    n = prepare_helpers.PIECE * 2 + 37
    broken = (3, prepare_helpers.PIECE + 5, n - 1)
    raws = records(n, broken=broken)
    for i in (8, prepare_helpers.PIECE + 8, n - 8):  # answers without usage: their tokens are counted
        raws[i] = encode_record({"kind": "request", "request_id": str(uuid.uuid4()), "created_at_ms": 1790000000000,
                                 "provider": "openai", "format": "openai", "path": "/v1/chat/completions",
                                 "status": 200, "response_content_type": "application/json"},
                                orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "count me"}]}),
                                orjson.dumps({"model": "gpt-4o", "choices": [{"message": {"content": "counted"}}]}))
    part = prepare_part(Enricher(PriceTable.load(None)), raws, encode_native, True, keep_rows=True)
    enricher = Enricher(PriceTable.load(None))
    rows = [enricher.row(decode_record(raw)) for i, raw in enumerate(raws) if i not in broken]
    assert part.count == len(rows) == n - 3
    assert [i for i, _ in part.rejected] == list(broken)
    assert part.ids == prepare_helpers.row_ids(rows)
    assert totals_dicts(part.totals) == totals_dicts(fold_rows(rows, raw_label, raw_label, raw_label))
    assert (part.counted, part.unpriced, part.unknown) == (enricher.counted, enricher.unpriced,
                                                          dict(enricher.prices.unknown_counts))
    assert part.counted == 3 and part.unpriced > 0
    # The blocks: each piece's readable rows encoded on their own, one after another.
    readable = [i for i in range(n) if i not in broken]
    pieces = [[rows[k] for k, i in enumerate(readable) if start <= i < start + prepare_helpers.PIECE]
              for start in range(0, n, prepare_helpers.PIECE)]
    assert part.encoded == [block for piece in pieces for block in encode_native(piece)]
    assert len(part.encoded) == 3
    assert [r["request_id"] for r in part.rows or ()] == [r["request_id"] for r in rows]


def test_metrics_folded_with_raw_labels_then_capped_equal_the_capped_fold() -> None:
    """What the exporter gets from a helper (raw labels) under its caps is what fold_rows with those
    caps gives, the overflow counts included, with the caps small enough to overflow."""
    enricher = Enricher(PriceTable.load(None))
    rows = [enricher.row(decode_record(raw)) for raw in records(200)]
    rows += [{**rows[0], "provider": "", "model_served": "", "model_requested": ""}]  # labels "none"
    capped = [LabelCap(1, ["openai"]), LabelCap(2), LabelCap(0)]
    direct = fold_rows(rows, *capped)
    caps = [LabelCap(1, ["openai"]), LabelCap(2), LabelCap(0)]
    relabelled = fold_rows(rows, raw_label, raw_label, raw_label).relabel(*caps)
    assert totals_dicts(relabelled) == totals_dicts(direct)
    assert [c.overflow for c in caps] == [c.overflow for c in capped]
    assert capped[1].overflow > 0 and capped[2].overflow > 0  # the caps were exceeded


def config_with_rings(tmp_path: Path, batch: int, helpers: int) -> tuple[Path, config_mod.Config, list[RecordBuffer]]:
    """A config into chDB (admin server off), and the two workers' rings it names."""
    cfg_file = tmp_path / "fastgw.yaml"
    cfg_file.write_text(f"logging: {{sink: 'chdb://{tmp_path / 'ch'}', run_dir: '{tmp_path / 'run'}', "
                        f"spill_dir: '{tmp_path / 'spill'}', ring_size: 8MiB, batch_max_records: {batch}, "
                        f"exporter_helpers: {helpers}}}\nadmin: {{enabled: false}}\n")
    cfg = config_mod.load(str(cfg_file))
    paths = LogPaths.for_config(cfg)
    return cfg_file, cfg, [RecordBuffer(paths.ring_file(w), paths.spill_dir(w), 8 << 20) for w in range(2)]


@contextmanager
def exporter_with_helpers(tmp_path: Path, monkeypatch: Any, helpers: int = 1,
                          batch: int = 600) -> Iterator[tuple[Exporter, list[RecordBuffer]]]:
    """An exporter into chDB with two rings; chunks of 100 records or more go to the helpers."""
    monkeypatch.setattr(exporter_module, "HELPED_MIN_RECORDS", 100)
    _, cfg, bufs = config_with_rings(tmp_path, batch, helpers)
    exporter = Exporter(cfg, LogPaths.for_config(cfg), 2)
    try:
        yield exporter, bufs
    finally:
        exporter.close()
        for buf in bufs:
            buf.close()


def push(bufs: list[RecordBuffer], raws: list[bytes]) -> None:
    for i, raw in enumerate(raws):
        bufs[i % 2].push(raw)


def drain(exporter: Exporter, total: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    exporter._attach_drains()
    while exporter.stats.exported < total:
        assert time.monotonic() < deadline, exporter.stats
        exporter.flush_once()


def stored(exporter: Exporter) -> tuple[int, int]:
    sink: Any = exporter.sink
    return sink.client.query("SELECT count(), uniqExact(request_id) FROM fastgw.requests").result_rows[0]


def test_an_exporter_with_helpers_stores_every_record_once_and_counts_them(tmp_path: Path, monkeypatch: Any) -> None:
    with exporter_with_helpers(tmp_path, monkeypatch) as (exporter, bufs):
        first = records(300)
        push(bufs, first)
        drain(exporter, 300)  # the sink opens; the first chunk that needs them starts the helpers
        assert exporter.helpers is not None
        ready(exporter.helpers)
        raws = records(3000, broken=(1500,))
        reference = Enricher(PriceTable.load(None))  # what the exporter alone would have counted
        for raw in first + raws[:1500] + raws[1501:]:
            reference.row(decode_record(raw))
        push(bufs, raws)
        # One batch read and prepared, not yet committed: its id is the in-process one.
        exporter._attach_drains()
        assert exporter.step() == 0
        flight = exporter._in_flight
        assert flight is not None and flight.chunks[0].rows is None  # prepared with the helpers
        chunk = flight.chunks[0]
        rows = [exporter.enricher.row(decode_record(raw)) for raw, _ in chunk.raws]
        assert chunk.batch_id == _batch_id(rows) and chunk.count == len(rows)
        drain(exporter, 3299)
        assert exporter.helpers.parts > 0 and exporter.helpers.failures == 0
        assert stored(exporter) == (3299, 3299)
        assert exporter.stats.rejected == 1  # the broken record, kept in the rejected file
        assert b"garbage" in Path(exporter.paths.rejected_file).read_bytes()
        assert exporter.metrics is not None
        assert sum(exporter.metrics.totals.requests.values()) == 3299
        assert exporter.prices.unknown_counts == reference.prices.unknown_counts
        assert (exporter.enricher.counted, exporter.enricher.unpriced) == (reference.counted, reference.unpriced)
        assert reference.unpriced > 0 and reference.prices.unknown_counts["no-such-model"] > 0


def test_a_helper_killed_or_hung_costs_no_record(tmp_path: Path, monkeypatch: Any) -> None:
    """Killed: its part is prepared in the exporter, and a new helper starts. Hung (stopped): the
    exporter waits PART_TIMEOUT, stops it, and prepares the part itself."""
    monkeypatch.setattr(prepare_helpers, "RESTART_EVERY", 0.0)
    monkeypatch.setattr(prepare_helpers, "PART_TIMEOUT", 1.0)
    with exporter_with_helpers(tmp_path, monkeypatch, batch=4000) as (exporter, bufs):
        push(bufs, records(300))
        drain(exporter, 300)
        assert exporter.helpers is not None
        ready(exporter.helpers)
        first = exporter.helpers.pids[0]
        os.kill(first, signal.SIGKILL)
        push(bufs, records(1200))
        drain(exporter, 1500)
        assert stored(exporter) == (1500, 1500)
        ready(exporter.helpers)
        second = exporter.helpers.pids[0]
        assert second != first
        os.kill(second, signal.SIGSTOP)
        # Parts of 2,000 records (over a MB): the send itself blocks on the stopped helper, for 1 s.
        push(bufs, records(4000))
        drain(exporter, 5500)
        assert exporter.helpers.failures >= 1  # the stopped one's part
        assert not os.path.exists(f"/proc/{second}") or "Z" in Path(f"/proc/{second}/stat").read_text().split()[2]
        assert stored(exporter) == (5500, 5500)
        assert exporter.metrics is not None and sum(exporter.metrics.totals.requests.values()) == 5500


def test_a_row_the_encoder_refuses_sends_the_chunk_row_by_row_counted_once(tmp_path: Path, monkeypatch: Any) -> None:
    """A row of an unknown kind fails a part's encoding, in the helper and again here: the chunk
    goes the in-process way (written row by row, that row kept for a human), and each record is
    counted by the enricher once, not once per attempt."""
    with exporter_with_helpers(tmp_path, monkeypatch, batch=1500) as (exporter, bufs):
        first = records(300)
        push(bufs, first)
        drain(exporter, 300)
        assert exporter.helpers is not None
        ready(exporter.helpers)
        raws = records(1000)
        raws[300] = encode_record({"kind": "bogus", "request_id": "not-a-row"}, b"", b"")
        push(bufs, raws)
        drain(exporter, 1300)
        assert exporter.helpers.failures >= 1  # the helper's part came back refused
        assert exporter.stats.rejected == 1 and stored(exporter) == (1299, 1299)
        reference = Enricher(PriceTable.load(None))
        for raw in first + raws:
            reference.row(decode_record(raw))
        assert exporter.prices.unknown_counts == reference.prices.unknown_counts
        assert (exporter.enricher.counted, exporter.enricher.unpriced) == (reference.counted, reference.unpriced)


def test_a_chunk_written_again_without_helpers_is_deduplicated(tmp_path: Path, monkeypatch: Any) -> None:
    """Written with a helper, then (the exporter gone before its commit) read again by an exporter
    whose helpers aren't ready: the same blocks, so chDB drops the second insert by its token, and
    even a plain count() is exact."""
    raws = records(1500)
    with exporter_with_helpers(tmp_path, monkeypatch, batch=1500) as (exporter, bufs):
        push(bufs, records(300))
        drain(exporter, 300)
        assert exporter.helpers is not None
        ready(exporter.helpers)
        push(bufs, raws)
        exporter._attach_drains()
        exporter.step()  # read, prepared with the helper, handed to the sink thread
        flight = exporter._in_flight
        assert flight is not None and exporter.helpers.parts == 1
        for future in flight.futures:
            future.result()  # written ...
        exporter._in_flight = None  # ... and never committed, as if the exporter had been killed
        assert stored(exporter) == (1800, 1800)
    with exporter_with_helpers(tmp_path, monkeypatch, batch=1500) as (again, _):
        again._attach_drains()
        assert again.flush_once() == 1500  # the same records, read again
        assert again.helpers is not None and again.helpers.parts == 0  # prepared here alone
        assert stored(again) == (1800, 1800)


EXPORTER_MAIN = """
import logging
import sys
logging.basicConfig(level=logging.INFO)  # as `fastgw serve` does: the helpers' "ready" lines
from fastgw import config
from fastgw.requestlog import exporter
from fastgw.requestlog.exporter import run_exporter
from fastgw.requestlog.paths import LogPaths
exporter.HELPED_MIN_RECORDS = 100
cfg = config.load(sys.argv[1])
run_exporter(cfg, LogPaths.for_config(cfg), 2)
"""


def test_helpers_die_with_a_killed_exporter_and_the_restarted_one_counts_exactly(tmp_path: Path) -> None:
    cfg_file, _, bufs = config_with_rings(tmp_path, 500, 1)
    log_file = (tmp_path / "exporter.log").open("wb")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", EXPORTER_MAIN, str(cfg_file)], stdout=log_file,
                                stderr=subprocess.STDOUT)

    def helpers_of(pid: int) -> list[int]:
        try:
            return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    proc = start()
    try:
        pushed = 0
        deadline = time.monotonic() + 90
        while not helpers_of(proc.pid):  # a helper starts with the first chunk of 100 or more
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "exporter.log").read_text()
            push(bufs, records(200))
            pushed += 200
            time.sleep(0.2)
        helper = helpers_of(proc.pid)[0]
        # Ready: past its PR_SET_PDEATHSIG (a helper stopped before that, while it imports, would
        # only see its pipe close once it ran again).
        while f"prepare helper {helper} ready" not in (tmp_path / "exporter.log").read_text():
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "exporter.log").read_text()
            push(bufs, records(200))
            pushed += 200
            time.sleep(0.2)
        push(bufs, records(2000))
        pushed += 2000
        # Stopped, the helper can't see its pipe close: PR_SET_PDEATHSIG is what ends it.
        os.kill(helper, signal.SIGSTOP)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{helper}"):
            assert time.monotonic() < deadline, "the helper outlived its exporter"
            time.sleep(0.05)
        proc = start()
        deadline = time.monotonic() + 120
        while sum(b.exported for b in bufs) < pushed:
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "exporter.log").read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for buf in bufs:
            buf.close()
        log_file.close()
    import clickhouse_connect

    client = clickhouse_connect.get_client(interface="chdb", path=str(tmp_path / "ch"))
    try:
        assert client.query("SELECT count(), uniqExact(request_id) FROM fastgw.requests FINAL").result_rows[0] == (
            pushed, pushed)
    finally:
        client.close()


def test_helper_ids_hash_to_the_batch_id() -> None:
    enricher = Enricher(PriceTable.load(None))
    rows = [enricher.row(decode_record(raw)) for raw in records(50)]
    parts = [prepare_part(enricher, records(0), encode_native, False)]
    h = hashlib.blake2b(digest_size=16)
    for part in (rows[:20], rows[20:]):
        h.update(prepare_helpers.row_ids(part))
    assert h.hexdigest() == _batch_id(rows)
    assert parts[0].count == 0 and parts[0].encoded == []


@pytest.mark.parametrize("setting", [0, 3])
def test_the_helper_count_is_the_setting_or_one_fewer_than_the_cores(tmp_path: Path, setting: int) -> None:
    for value, expected in ((setting, setting), (-1, exporter_module._usable_cpus() - 1)):
        cfg_file = tmp_path / "fastgw.yaml"
        cfg_file.write_text(f"logging: {{sink: 'none', run_dir: '{tmp_path / 'run'}', spill_dir: '{tmp_path / 'spill'}', "
                            f"exporter_helpers: {value}}}\n")
        cfg = config_mod.load(str(cfg_file))
        assert Exporter(cfg, LogPaths.for_config(cfg), 1).helper_count == expected
