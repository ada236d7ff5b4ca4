"""Request-log sinks against real engines: chDB (in-process ClickHouse) through clickhouse-connect,
the filesystem for jsonl, and a closed/silent TCP port for an unreachable ClickHouse server.

chDB serves one data folder per process at a time, so every test opens its own folder through one
sink (whose client the assertions reuse) and closes it before the next test starts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import clickhouse_connect
import pytest

import fastgw._native
from fastgw.requestlog import schema
from fastgw.requestlog.sinks import SinkError, SinkOptions, make_sink
from fastgw.requestlog.sinks import base as sinks_base
from fastgw.requestlog.sinks.clickhouse import ClickHouseSink
from fastgw.requestlog.sinks.jsonl import JsonlSink
from fastgw.requestlog.sinks.none import NoneSink

UTC = dt.timezone.utc
NOW = dt.datetime.now(UTC).replace(microsecond=123000)
COUNT_FINAL = "SELECT count() FROM fastgw.requests FINAL"


def request_row(i: int, **extra: Any) -> dict[str, Any]:
    row = {
        "request_id": uuid.UUID(int=i + 1),
        "created_at": NOW - dt.timedelta(seconds=i),
        "provider": "openai" if i % 2 else "anthropic",
        "model_requested": "gpt-4o",
        "status": 200,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "request_body": '{"messages": []}',
        "response_body": '{"choices": []}',
    }
    row.update(extra)
    return row


def scalar(sink: ClickHouseSink, sql: str) -> Any:
    return sink.client.query(sql).result_rows[0][0]


@pytest.fixture
def open_chdb(tmp_path: Path) -> Iterator[Callable[..., ClickHouseSink]]:
    """Open chDB sinks on this test's folder; each is closed (freeing the engine) afterwards."""
    opened: list[ClickHouseSink] = []

    def open_(**options: Any) -> ClickHouseSink:
        sink = make_sink(f"chdb://{tmp_path / 'ch'}", options)
        assert isinstance(sink, ClickHouseSink)
        opened.append(sink)
        sink.open()
        return sink

    yield open_
    for sink in opened:
        sink.close()


# --- schema --------------------------------------------------------------------------------------

def test_schema_created_from_scratch(open_chdb: Callable[..., ClickHouseSink]) -> None:
    sink = open_chdb()
    assert sink.migration is not None and sink.migration.warnings == []
    for table in schema.TABLES:
        columns = sink.client.query(
            "SELECT name, type FROM system.columns WHERE database = 'fastgw' AND table = {t:String} "
            "ORDER BY position", parameters={"t": table.name}).result_rows
        assert columns == [(c.name, c.type) for c in table.columns]
    engine, partition, sorting, primary, create = sink.client.query(
        "SELECT engine, partition_key, sorting_key, primary_key, create_table_query FROM system.tables "
        "WHERE database = 'fastgw' AND name = 'requests'").result_rows[0]
    assert engine == "ReplacingMergeTree"
    assert partition == "toYYYYMM(created_at)"
    assert sorting == "toStartOfHour(created_at), provider, model_requested, request_id"
    assert primary == "toStartOfHour(created_at), provider, model_requested"
    assert "non_replicated_deduplication_window = 1000" in create
    assert " TTL " not in create  # body_ttl_days defaults to 0: keep bodies forever
    assert sink.dedup_tokens is True
    sink.close()
    again = open_chdb()  # a second start changes nothing
    assert again.migration is not None
    assert again.migration.statements == [schema.create_database_sql("fastgw")]


def test_a_table_setting_tuned_by_hand_is_kept_at_the_next_start(open_chdb: Callable[..., ClickHouseSink]) -> None:
    sink = open_chdb()
    sink.client.command("ALTER TABLE fastgw.requests MODIFY SETTING min_bytes_for_wide_part = 1048576")
    sink.close()
    again = open_chdb()
    assert again.migration is not None
    assert again.migration.statements == [schema.create_database_sql("fastgw")]
    create = scalar(again, "SELECT create_table_query FROM system.tables WHERE name = 'requests'")
    assert "min_bytes_for_wide_part = 1048576" in create and "merge_selector_base = 20" in create


def test_migration_adds_missing_columns_to_an_older_table(tmp_path: Path, open_chdb: Callable[..., ClickHouseSink]) -> None:
    dropped = {"fallback_index", "worker", "gateway_instance"}
    old = dataclasses.replace(schema.REQUESTS, indexes=(), settings=(),
                              columns=tuple(c for c in schema.REQUESTS.columns if c.name not in dropped))
    client = clickhouse_connect.get_client(interface="chdb", path=str(tmp_path / "ch"))
    try:
        client.command(schema.create_database_sql("fastgw"))
        client.command(schema.create_table_sql(old, dedup_window=0))  # older DDL: no dedup window either
        client.command("INSERT INTO fastgw.requests (request_id, created_at, provider) "
                       "VALUES ('00000000-0000-0000-0000-0000000000aa', now64(3), 'openai')")
    finally:
        client.close()

    sink = open_chdb()
    assert sink.migration is not None
    added = [s for s in sink.migration.statements if "ADD COLUMN" in s]
    assert len(added) == 3
    assert any("`fallback_index` Int8 DEFAULT -1 AFTER `retry_count`" in s for s in added)
    assert any("MODIFY SETTING non_replicated_deduplication_window = 1000" in s for s in sink.migration.statements)
    assert ("ALTER TABLE `fastgw`.`requests` MODIFY SETTING merge_selector_base = 20, "
            "min_bytes_for_wide_part = 268435456") in sink.migration.statements
    ddl = scalar(sink, "SELECT create_table_query FROM system.tables WHERE name = 'requests'")
    assert "merge_selector_base = 20" in ddl and "min_bytes_for_wide_part = 268435456" in ddl
    assert scalar(sink, "SELECT name FROM system.data_skipping_indices WHERE table = 'requests'") == "idx_request_id"
    columns = [r[0] for r in sink.client.query(
        "SELECT name FROM system.columns WHERE database = 'fastgw' AND table = 'requests' ORDER BY position").result_rows]
    assert columns == [c.name for c in schema.REQUESTS.columns]  # in place, not appended
    # The old row reads the new columns' documented defaults: -1 is "no fallback", not "fallback 0".
    assert sink.client.query("SELECT fallback_index, worker, gateway_instance FROM fastgw.requests").result_rows == [(-1, 0, "")]
    assert sink.dedup_tokens is True
    sink.write([request_row(1, worker=3, gateway_instance="gw-a")], "after-migration")
    assert scalar(sink, "SELECT worker FROM fastgw.requests WHERE gateway_instance = 'gw-a'") == 3


def test_plan_reports_type_conflicts_and_adds_missing_indexes() -> None:
    columns = {c.name: c.type for c in schema.REQUESTS.columns}
    columns["status"] = "UInt32"
    no_index = dataclasses.replace(schema.REQUESTS, indexes=())
    state = {"requests": schema.TableState(columns, schema.create_table_sql(no_index), "ReplacingMergeTree")}
    plan = schema.plan(state)
    assert not any("`status`" in s for s in plan.statements)  # additive only: a human changes types
    assert plan.warnings and "status is UInt32" in plan.warnings[0]
    assert "ALTER TABLE `fastgw`.`requests` ADD INDEX IF NOT EXISTS idx_request_id request_id " \
        "TYPE bloom_filter(0.01) GRANULARITY 4" in plan.statements
    assert [s for s in plan.statements if s.startswith("CREATE TABLE")] == [
        schema.create_table_sql(schema.FEEDBACK), schema.create_table_sql(schema.SCORES)]


def test_table_settings_only_where_the_server_has_them() -> None:
    assert schema.REQUESTS.settings == (("merge_selector_base", 20), ("min_bytes_for_wide_part", 256 << 20))
    assert "merge_selector_base = 20, min_bytes_for_wide_part = 268435456" in schema.create_table_sql(schema.REQUESTS)
    older = frozenset({"min_bytes_for_wide_part"})  # a server from before merge_selector_base
    assert "merge_selector_base" not in schema.create_table_sql(schema.REQUESTS, known_settings=older)
    assert "min_bytes_for_wide_part = 268435456" in schema.create_table_sql(schema.REQUESTS, known_settings=older)
    assert "non_replicated_deduplication_window = 1000" in schema.create_table_sql(schema.REQUESTS, known_settings=older)
    columns = {c.name: c.type for c in schema.REQUESTS.columns}
    without = schema.create_table_sql(dataclasses.replace(schema.REQUESTS, settings=()))
    state = {"requests": schema.TableState(columns, without, "ReplacingMergeTree")}
    assert ("ALTER TABLE `fastgw`.`requests` MODIFY SETTING merge_selector_base = 20, "
            "min_bytes_for_wide_part = 268435456") in schema.plan(state).statements
    assert "ALTER TABLE `fastgw`.`requests` MODIFY SETTING min_bytes_for_wide_part = 268435456" \
        in schema.plan(state, known_settings=older).statements
    assert not any("merge_selector_base" in s for s in schema.plan(state, known_settings=older).statements)
    have = {"requests": schema.TableState(columns, schema.create_table_sql(schema.REQUESTS), "ReplacingMergeTree")}
    assert not any("requests` MODIFY SETTING" in s for s in schema.plan(have).statements)
    # A value set by hand is the operator's: only the setting the table has no value for is added.
    tuned = schema.create_table_sql(dataclasses.replace(schema.REQUESTS, settings=(("min_bytes_for_wide_part", 1 << 20),)))
    state = {"requests": schema.TableState(columns, tuned, "ReplacingMergeTree")}
    assert [s for s in schema.plan(state).statements if "requests` MODIFY SETTING" in s] == [
        "ALTER TABLE `fastgw`.`requests` MODIFY SETTING merge_selector_base = 20"]


def test_an_insert_over_10_mib_is_one_compact_part(open_chdb: Callable[..., ClickHouseSink]) -> None:
    """A chunk the exporter writes (5,000 rows) with 2 KB of bodies a row is over ClickHouse's
    default 10 MiB for a Wide part, a file per column: the table keeps it Compact, one data file."""
    sink = open_chdb()
    body = "x" * 1100
    # One timestamp: rows seconds apart could straddle a month, and so two partitions and two parts.
    rows = [request_row(i, created_at=NOW, request_body=body, response_body=body) for i in range(5000)]
    sink.write(rows, "big-chunk")
    parts = sink.client.query("SELECT part_type, rows, data_uncompressed_bytes FROM system.parts "
                              "WHERE database = 'fastgw' AND table = 'requests' AND active").result_rows
    assert len(parts) == 1 and parts[0][1] == 5000
    assert parts[0][2] > 10 << 20  # past the default, so the setting is what keeps it Compact
    assert parts[0][0] == "Compact"


# --- dedup -----------------------------------------------------------------------------------------

def test_same_batch_twice_and_overlapping_batches_count_exactly(open_chdb: Callable[..., ClickHouseSink]) -> None:
    sink = open_chdb()
    first = [request_row(i) for i in range(100)]
    sink.write(first, "batch-1")
    sink.write(first, "batch-1")  # the exporter crashed after sending, before recording success
    # The token drops the re-sent batch whole, so even the raw count is exact.
    assert scalar(sink, "SELECT count() FROM fastgw.requests") == 100
    assert scalar(sink, COUNT_FINAL) == 100

    # After a restart the exporter re-batched: rows 50..99 arrive again under another batch id.
    sink.write([request_row(i) for i in range(50, 150)], "batch-2")
    assert scalar(sink, "SELECT count() FROM fastgw.requests") == 200  # raw: duplicates until merged
    assert scalar(sink, COUNT_FINAL) == 150
    assert scalar(sink, "SELECT sum(prompt_tokens) FROM fastgw.requests FINAL") == 1500
    assert scalar(sink, "SELECT uniqExact(request_id) FROM fastgw.requests") == 150
    assert scalar(sink, "SELECT count() FROM (SELECT request_id FROM fastgw.requests GROUP BY request_id)") == 150
    assert scalar(sink, COUNT_FINAL + " SETTINGS do_not_merge_across_partitions_select_final = 1") == 150
    sink.client.command("OPTIMIZE TABLE fastgw.requests FINAL")
    assert scalar(sink, "SELECT count() FROM fastgw.requests") == 150  # merges converge to the truth


@pytest.mark.parametrize("native", [True, False], ids=["native-block", "column-lists"])
def test_mixed_kinds_route_to_their_tables_and_dedup(open_chdb: Callable[..., ClickHouseSink], native: bool) -> None:
    sink = open_chdb()
    assert sink.native_blocks is fastgw._native.NATIVE  # chDB converts types on Native input
    sink.native_blocks = native  # False: the path for servers that cannot
    rid = uuid.UUID(int=1)
    batch = [
        request_row(0),
        {"kind": "feedback", "request_id": rid, "created_at": NOW, "rating": True},
        {"kind": "score", "request_id": str(rid), "name": "helpful", "value": True, "created_at": NOW},
        {"kind": "score", "request_id": rid, "name": "latency_ok", "value": 0.75, "created_at": NOW},
    ]
    sink.write(batch, "mixed")
    sink.write(batch, "mixed")
    later = NOW + dt.timedelta(minutes=1)  # a changed rating replaces the old one
    sink.write([{"kind": "feedback", "request_id": rid, "created_at": later, "rating": False}], "rerate")
    assert scalar(sink, COUNT_FINAL) == 1
    assert sink.client.query("SELECT request_id, rating FROM fastgw.feedback FINAL").result_rows == [(rid, False)]
    assert sink.client.query("SELECT name, value, is_bool FROM fastgw.scores FINAL ORDER BY name").result_rows == [
        ("helpful", 1.0, True), ("latency_ok", 0.75, False)]


# --- values --------------------------------------------------------------------------------------

@pytest.mark.parametrize("native", [True, False], ids=["native-block", "column-lists"])
def test_values_round_trip_with_defaults(open_chdb: Callable[..., ClickHouseSink], native: bool) -> None:
    sink = open_chdb()
    assert sink.native_blocks is fastgw._native.NATIVE  # chDB converts types on Native input
    sink.native_blocks = native  # False: the path for servers that cannot
    ts = dt.datetime(2025, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)
    rows = [
        request_row(0, created_at=ts, properties={"env": "prod", "team": "search"}, cost_nanousd=1_234_567_890_123,
                    request_headers={"user-agent": "OpenAI/Python"}, stream=True, fallback_index=1),
        request_row(1, created_at=ts.timestamp(), cost_nanousd=None, cost_null_reason="unknown_model",
                    request_id=str(uuid.UUID(int=2)), properties=None),  # epoch seconds, id as text, None → {}
        {"request_id": uuid.UUID(int=3), "created_at": ts.replace(tzinfo=None).isoformat()},  # everything else defaulted
    ]
    sink.write(rows, "values")
    got = sink.client.query(
        "SELECT request_id, created_at, properties, cost_nanousd, cost_null_reason, request_headers, stream, "
        "fallback_index, status, provider FROM fastgw.requests FINAL ORDER BY request_id").result_rows
    naive = ts.replace(tzinfo=None)  # clickhouse-connect returns naive UTC
    assert got == [
        (uuid.UUID(int=1), naive, {"env": "prod", "team": "search"}, 1_234_567_890_123, "",
         {"user-agent": "OpenAI/Python"}, True, 1, 200, "anthropic"),
        (uuid.UUID(int=2), naive, {}, None, "unknown_model", {}, False, -1, 200, "openai"),
        (uuid.UUID(int=3), naive, {}, None, "", {}, False, -1, 0, ""),
    ]
    assert scalar(sink, "SELECT countIf(inserted_at > now64(3) - INTERVAL 1 MINUTE) FROM fastgw.requests") == 3


@pytest.mark.parametrize("native", [True, False], ids=["native-block", "column-lists"])
def test_bad_rows_are_programming_errors_and_store_nothing(open_chdb: Callable[..., ClickHouseSink], native: bool) -> None:
    sink = open_chdb()
    assert sink.native_blocks is fastgw._native.NATIVE  # chDB converts types on Native input
    sink.native_blocks = native  # False: the path for servers that cannot
    no_id = {"created_at": NOW, "provider": "openai"}
    with pytest.raises(ValueError, match="request_id"):
        sink.write([request_row(0), no_id], "bad")
    with pytest.raises(ValueError, match="unknown record kind"):
        sink.write([request_row(0), {"kind": "metric"}], "bad")
    assert scalar(sink, "SELECT count() FROM fastgw.requests") == 0


def test_a_dropped_table_is_a_sink_error_then_recreated(open_chdb: Callable[..., ClickHouseSink]) -> None:
    sink = open_chdb()
    sink.client.command("DROP TABLE fastgw.requests")  # an operator cleaning up by hand
    with pytest.raises(SinkError, match="requests"):
        sink.write([request_row(0)], "lost")
    sink.write([request_row(0)], "lost")  # the exporter's retry: schema recreated, batch stored
    assert scalar(sink, COUNT_FINAL) == 1


def test_prepared_before_the_sink_opened_is_encoded_again_to_match_the_connection(tmp_path: Path) -> None:
    """The exporter prepares (encodes) on its own thread and may do so before the sink is open:
    column lists then, while the open chDB connection takes Native blocks."""
    sink = make_sink(f"chdb://{tmp_path / 'ch'}")
    assert isinstance(sink, ClickHouseSink)
    try:
        early = sink.prepare([request_row(i) for i in range(3)])
        assert early.native is False and [t.name for t, _ in early.tables] == ["requests"]
        assert sink.prepare([]).tables == []
        sink.write_prepared(early, "early")  # opens (the schema is created), encodes again, stores
        assert sink.native_blocks is fastgw._native.NATIVE
        late = sink.prepare([request_row(i) for i in range(3, 5)])
        assert late.native is sink.native_blocks
        if late.native:
            assert isinstance(late.tables[0][1], bytes)  # a Native block, encoded here
        sink.write_prepared(late, "late")
        sink.write_prepared(late, "late")  # a retry of the same batch: deduplicated
        assert scalar(sink, "SELECT count() FROM fastgw.requests") == 5
    finally:
        sink.close()


# --- body TTL ------------------------------------------------------------------------------------

def body_ttls(sink: ClickHouseSink) -> list[str]:
    create = scalar(sink, "SELECT create_table_query FROM system.tables WHERE database = 'fastgw' AND name = 'requests'")
    return [part.split(",")[0] for part in create.split("`")[1:] if part.startswith(" String TTL")]


def test_body_ttl_is_in_the_ddl_and_follows_config(open_chdb: Callable[..., ClickHouseSink]) -> None:
    sink = open_chdb(body_ttl_days=30)
    assert body_ttls(sink) == [" String TTL toDateTime(created_at) + toIntervalDay(30)"] * 2
    sink.close()
    sink = open_chdb(body_ttl_days=7)
    assert body_ttls(sink) == [" String TTL toDateTime(created_at) + toIntervalDay(7)"] * 2
    sink.close()
    sink = open_chdb(body_ttl_days=0)
    assert body_ttls(sink) == []
    assert "TTL" not in sink.client.command("SHOW CREATE TABLE fastgw.requests")


def test_expired_bodies_are_blanked_rows_kept(open_chdb: Callable[..., ClickHouseSink]) -> None:
    sink = open_chdb(body_ttl_days=30)
    sink.write([request_row(0, created_at=NOW - dt.timedelta(days=90)), request_row(1)], "ttl")
    sink.client.command("OPTIMIZE TABLE fastgw.requests FINAL")  # TTL applies at merge time
    got = sink.client.query("SELECT request_id, request_body, response_body, prompt_tokens "
                            "FROM fastgw.requests ORDER BY request_id").result_rows
    assert got == [(uuid.UUID(int=1), "", "", 10), (uuid.UUID(int=2), '{"messages": []}', '{"choices": []}', 10)]


# --- failures ------------------------------------------------------------------------------------

def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_clickhouse_is_a_sink_error_not_a_hang() -> None:
    sink = make_sink(f"http://default:secret@127.0.0.1:{closed_port()}/fastgw", {"connect_timeout": 1})
    started = time.monotonic()
    with pytest.raises(SinkError, match="cannot connect"):
        sink.open()
    with pytest.raises(SinkError):
        sink.write([request_row(0)], "b")  # write reconnects, and fails the same way
    assert time.monotonic() - started < 5
    assert "secret" not in repr(sink)
    sink.close()


def test_silent_clickhouse_times_out_as_a_sink_error() -> None:
    with socket.socket() as listener:  # accepts connections (kernel backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        sink = make_sink(f"http://127.0.0.1:{port}", {"connect_timeout": 1, "send_receive_timeout": 1})
        started = time.monotonic()
        with pytest.raises(SinkError):
            sink.open()
        assert time.monotonic() - started < 5
        sink.close()


def test_chdb_folder_held_by_another_process_is_a_sink_error(tmp_path: Path, open_chdb: Callable[..., ClickHouseSink]) -> None:
    folder = tmp_path / "ch"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, clickhouse_connect
        client = clickhouse_connect.get_client(interface="chdb", path={str(folder)!r})
        print("ready", flush=True)
        sys.stdin.read()
        client.close()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(SinkError, match="another process"):
            open_chdb()
    finally:
        holder.communicate("", timeout=30)
    sink = open_chdb()  # released: this process can have it now
    assert scalar(sink, "SELECT count() FROM fastgw.requests") == 0


# --- jsonl and none ------------------------------------------------------------------------------

def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_content_and_rotation(tmp_path: Path) -> None:
    sink = make_sink(f"jsonl://{tmp_path / 'log'}", {"jsonl_max_bytes": 3000, "jsonl_keep": 2})
    assert isinstance(sink, JsonlSink)
    sink.open()
    try:
        batches = [[request_row(b * 4 + i, request_body=b"raw \xff bytes", properties={"env": "prod"})
                    for i in range(4)] for b in range(8)]
        batches[0].append({"kind": "score", "request_id": uuid.UUID(int=99), "name": "ok", "value": True, "created_at": NOW})
        for n, batch in enumerate(batches):
            sink.write(batch, f"b{n}")
    finally:
        sink.close()
    files = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert files == ["requests.1.jsonl", "requests.2.jsonl", "requests.jsonl"]  # older ones deleted
    for name in files:
        assert (tmp_path / "log" / name).stat().st_size <= 3000
    active = read_lines(tmp_path / "log" / "requests.jsonl")
    newest = read_lines(tmp_path / "log" / "requests.1.jsonl")
    oldest = read_lines(tmp_path / "log" / "requests.2.jsonl")
    everything = oldest + newest + active
    ids = [uuid.UUID(r["request_id"]).int - 1 for r in everything]
    assert ids == list(range(ids[0], 32))  # contiguous, in order, ending with the last batch
    assert active[-1]["request_id"] == str(uuid.UUID(int=32))
    row = active[-1]
    assert row["request_body"] == "raw \ufffd bytes"
    assert row["properties"] == {"env": "prod"}
    assert dt.datetime.fromisoformat(row["created_at"]) == NOW - dt.timedelta(seconds=31)

    again = JsonlSink(tmp_path / "log", SinkOptions(jsonl_max_bytes=3000, jsonl_keep=2))
    again.open()  # a restart appends to the active file
    try:
        again.write([request_row(500)], "b-after-restart")
    finally:
        again.close()
    assert read_lines(tmp_path / "log" / "requests.jsonl")[:-1] == active


def test_jsonl_keeps_score_rows_with_their_kind(tmp_path: Path) -> None:
    sink = make_sink(f"jsonl://{tmp_path}")
    sink.open()
    sink.write([{"kind": "score", "request_id": uuid.UUID(int=7), "name": "ok", "value": True, "created_at": NOW}], "s")
    sink.close()
    assert read_lines(tmp_path / "requests.jsonl") == [
        {"kind": "score", "request_id": str(uuid.UUID(int=7)), "name": "ok", "value": True, "created_at": NOW.isoformat()}]


def test_none_accepts_everything() -> None:
    sink = make_sink("none")
    assert isinstance(sink, NoneSink)
    sink.open()
    sink.write([{"anything": object()}, {"kind": "nonsense"}], "x")
    sink.write([], "y")
    sink.write_prepared(sink.prepare([{"a": 1}]), "z")
    sink.close()
    assert sink.rows_written == 3


# --- URLs and options ----------------------------------------------------------------------------

def test_urls_and_options() -> None:
    ch = make_sink("https://alice:p%40ss@ch.example:9443/logs", {"body_ttl_days": 14})
    assert isinstance(ch, ClickHouseSink)
    assert (ch.host, ch.port, ch.username, ch.password, ch.secure, ch.database) == (
        "ch.example", 9443, "alice", "p@ss", True, "logs")
    assert ch.options.body_ttl_days == 14
    plain = make_sink("http://ch.example")
    assert isinstance(plain, ClickHouseSink)
    assert (plain.port, plain.username, plain.database) == (8123, "default", "fastgw")
    default = make_sink("chdb://")
    assert isinstance(default, ClickHouseSink) and default.chdb_path == str(Path("fastgw-data").resolve())
    with pytest.raises(ValueError, match="unknown sink URL scheme"):
        make_sink("kafka://broker")
    with pytest.raises(ValueError, match="unknown sink option"):
        make_sink("none", {"body_ttl": 3})


def test_a_registered_sink_with_write_alone_gets_whole_writes() -> None:
    """A third-party sink written before prepare/write_prepared existed still takes every batch whole."""

    class Remembers:
        def __init__(self) -> None:
            self.batches: list[tuple[list[dict[str, Any]], str]] = []

        def open(self) -> None:
            pass

        def write(self, rows: list[dict[str, Any]], batch_id: str) -> None:
            self.batches.append((rows, batch_id))

        def close(self) -> None:
            pass

    made = Remembers()
    sinks_base.register("remembers", lambda url, options: made)
    try:
        sink = make_sink("remembers://")
        assert isinstance(sink, sinks_base.WholeWrites) and sink.sink is made
        sink.open()
        rows = [request_row(0), request_row(1)]
        sink.write_prepared(sink.prepare(rows), "b1")
        sink.write_prepared(sink.prepare([]), "b2")  # nothing to write: not passed on
        sink.write(rows[:1], "b3")
        sink.close()
        assert made.batches == [(rows, "b1"), (rows[:1], "b3")]
    finally:
        sinks_base._REGISTRY.pop("remembers")


# --- chDB's merge threads yield to the exporter ------------------------------------------------------


def _threads_named(prefix: str) -> dict[int, int]:
    out = {}
    for name in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{name}/comm") as f:
                if f.read().startswith(prefix):
                    out[int(name)] = os.getpriority(os.PRIO_PROCESS, int(name))
        except OSError:
            continue
    return out


def test_chdb_merge_threads_run_at_the_lowest_priority_after_a_write(open_chdb: Callable[..., ClickHouseSink]) -> None:
    sink = open_chdb()
    for i in range(4):  # a few parts: merges get scheduled
        sink.write([request_row(100 * i + j) for j in range(50)], f"b{i}")
    merges = _threads_named("MergeMutate")
    assert merges, "chDB runs no merge thread in this process"
    assert set(merges.values()) == {19}, merges
    others = _threads_named("")
    assert any(nice < 19 for tid, nice in others.items() if tid not in merges)  # only those


def test_background_priority_lowers_matching_threads_once(tmp_path: Path) -> None:
    from fastgw.requestlog.sinks.chdb_threads import BackgroundPriority

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    target = max(before, 5)
    result: list[object] = []

    def run() -> None:  # a thread of its own: lowering it leaves the test's thread alone
        tid = threading.get_native_id()
        tasks = tmp_path / "task"
        for t, comm in ((tid, "MergeMutate"), (999_999_999, "MergeMutate"), (os.getpid(), "python")):
            (tasks / str(t)).mkdir(parents=True)
            (tasks / str(t) / "comm").write_text(comm + "\n")
        bp = BackgroundPriority(nice=target, tasks_dir=str(tasks))
        result.extend([bp.apply(), bp.apply(), os.getpriority(os.PRIO_PROCESS, tid), bp.lowered == {tid}])

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(10)
    # Lowered once (the second call skips it); the vanished thread and "python" never.
    assert result == [1, 0, target, True]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_merge_deferral_waits_while_behind_for_a_bounded_time_then_lets_merges_run() -> None:
    from fastgw.requestlog.sinks.chdb_threads import MergeDeferral

    now = [100.0]
    d = MergeDeferral(max_defer=30.0, min_run=5.0, clock=lambda: now[0])
    assert not d.update(behind=False, caught_up=False)
    assert d.update(behind=True, caught_up=False)  # a backlog: merges wait
    now[0] += 10
    assert d.update(behind=False, caught_up=False)  # near capacity: no change
    now[0] += 1
    assert not d.update(behind=False, caught_up=True)  # caught up: merges run
    now[0] += 4
    assert not d.update(behind=True, caught_up=False)  # ... for at least min_run
    now[0] += 1
    assert d.update(behind=True, caught_up=False)
    now[0] += 29.9
    assert d.update(behind=True, caught_up=False)
    now[0] += 0.1
    assert not d.update(behind=True, caught_up=False)  # max_defer: merges run however far behind
    now[0] += 4.9
    assert not d.update(behind=True, caught_up=False)
    now[0] += 0.1
    assert d.update(behind=True, caught_up=False)
