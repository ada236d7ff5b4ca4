"""The request-log schema as data, its DDL, and the additive migrations run when a sink opens.

Every request becomes one row of ``<db>.requests``; feedback and scores get their own small tables.
The column lists below are the single source of truth: the ClickHouse sink builds its inserts from
them (name, type, the Python default a missing key takes), the DDL is generated from them, and
``migrate`` compares them with ``system.columns`` so a column added here later reaches existing
tables as ``ALTER TABLE ... ADD COLUMN IF NOT EXISTS`` at the next start. Migrations are additive
only: a column whose type differs is reported, never altered (a type change can rewrite terabytes
and deserves a human). Likewise a table setting is added where the table has no value for it, and
a value already there, tuned by hand, stays.

Delivery is at least once (the exporter re-sends a batch after a crash), so the tables must absorb
duplicates, in two layers:

1. every insert carries ``insert_deduplication_token = <batch id>``; with
   ``non_replicated_deduplication_window`` set (replicated/cloud engines have their own window) the
   server drops a re-sent batch whole, so even raw ``count()`` stays exact for plain retries;
2. ReplacingMergeTree collapses rows that share the full ORDER BY key. That covers what tokens
   cannot: a crash that re-batches rows differently, or a re-send older than the window. The
   collapse happens at merge time, so reads that must be exact say so:

       SELECT count() FROM fastgw.requests FINAL WHERE created_at >= now() - INTERVAL 1 DAY
       SELECT provider, sum(prompt_tokens) FROM fastgw.requests FINAL GROUP BY provider
       SELECT uniqExact(request_id) FROM fastgw.requests               -- counts only
       SELECT request_id, argMax(status, inserted_at) ... GROUP BY request_id  -- without FINAL

   Duplicates of a request never straddle partitions (the partition key is a function of the key),
   so ``SETTINGS do_not_merge_across_partitions_select_final = 1`` is safe and makes FINAL cheaper.
   Feedback and scores are read the same way (``FROM fastgw.feedback FINAL``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_DATABASE = "fastgw"
# Recent insert tokens/hashes each table remembers. At one batch a second that is ~16 minutes,
# far longer than an exporter takes to restart and re-send; older re-sends fall to layer 2.
DEFAULT_DEDUP_WINDOW = 1000
_EMPTY_MAP: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class Column:
    """One column. ``default`` is what a missing (or None) key becomes, except in Nullable columns.

    ``sql_default`` is written into the DDL only where the type's zero value would lie about rows
    that predate the column (``fallback_index`` -1 means "no fallback", 0 is the first fallback).
    ``required`` columns have no safe default: a made-up request id or timestamp would collapse
    unrelated rows under ReplacingMergeTree, so a row without one is a bug the producer must see.
    ``server`` columns are filled by ClickHouse and never sent.
    """

    name: str
    type: str
    default: Any = None
    sql_default: str | None = None
    required: bool = False
    server: bool = False
    body: bool = False  # subject to the body TTL

    @property
    def nullable(self) -> bool:
        return self.type.startswith("Nullable(")


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    engine: str
    order_by: str
    partition_by: str | None = None
    primary_key: str | None = None
    indexes: tuple[str, ...] = ()
    # MergeTree settings, set where the server knows them (an older server simply goes without).
    settings: tuple[tuple[str, int], ...] = ()

    @property
    def insert_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if not c.server)


def _u32(name: str) -> Column:
    return Column(name, "UInt32", 0)


def _lc(name: str) -> Column:
    return Column(name, "LowCardinality(String)", "")


def _str(name: str, body: bool = False) -> Column:
    return Column(name, "String", "", body=body)


_MAP = "Map(LowCardinality(String), String)"
_TS = "DateTime64(3, 'UTC')"
_ATTEMPTS = ("Array(Tuple(target String, status UInt16, error String, start_us UInt32, dur_us UInt32, "
             "fallback_index Int8))")

REQUESTS = Table(
    name="requests",
    columns=(
        Column("request_id", "UUID", required=True),
        Column("created_at", _TS, required=True),
        _u32("total_us"), _u32("ttfb_us"), _u32("upstream_us"), _u32("gateway_us"),
        _lc("method"), _str("path"), _lc("provider"), _str("target_url"),
        _lc("model_requested"), _lc("model_served"),
        Column("status", "UInt16", 0), _lc("error_type"), _str("error_message"),
        Column("stream", "Bool", False),
        _u32("prompt_tokens"), _u32("completion_tokens"), _u32("cache_read_tokens"),
        _u32("cache_write_tokens"), _u32("reasoning_tokens"), _lc("usage_source"),
        Column("cost_nanousd", "Nullable(Int64)", None), _lc("cost_null_reason"),
        _str("user_id"), Column("properties", _MAP, _EMPTY_MAP),
        _str("session_id"), _str("session_path"), _str("session_name"),
        _lc("cache_status"), Column("cache_saved_nanousd", "Int64", 0),
        Column("retry_count", "UInt8", 0), Column("fallback_index", "Int8", -1, sql_default="-1"),
        # One entry per upstream attempt (stages/router.py): which target, its status (0: no answer),
        # its error, and when it started and how long it took, in microseconds from the request's start.
        Column("attempts", _ATTEMPTS, []),
        _lc("key_id"), Column("request_headers", _MAP, _EMPTY_MAP),
        _str("request_body", body=True), _str("response_body", body=True),
        Column("request_truncated", "Bool", False), Column("response_truncated", "Bool", False),
        Column("worker", "UInt16", 0), _lc("gateway_instance"),
        # The ReplacingMergeTree version: of two copies of a request the later insert survives.
        Column("inserted_at", _TS, sql_default="now64(3)", server=True),
    ),
    engine="ReplacingMergeTree(inserted_at)",
    # Months: a few dozen partitions per year keeps part counts low at any traffic, and retention
    # can drop a whole month with DROP PARTITION.
    partition_by="toYYYYMM(created_at)",
    # Dashboards ask "this time range", then "for this provider / model". The hour bucket first
    # prunes every time-range query; within an hour a provider's and a model's rows are contiguous.
    # ReplacingMergeTree collapses rows whose *whole* sorting key is equal, so every element must
    # be a function of the request alone (a re-send yields the same key) and request_id must be
    # in it (two requests in the same hour/provider/model are different rows). model_served and
    # status are left out: they would not break dedup, but add sort cost for no pruning gain.
    order_by="(toStartOfHour(created_at), provider, model_requested, request_id)",
    # The primary index is a prefix of the sorting key: it stays small in memory (no 16-byte UUID
    # per granule) while the sorting key still carries request_id for the dedup.
    primary_key="(toStartOfHour(created_at), provider, model_requested)",
    # Point lookups by id (a request's detail page, joining feedback) skip granules via a bloom
    # filter instead of scanning the time range.
    indexes=("INDEX idx_request_id request_id TYPE bloom_filter(0.01) GRANULARITY 4",),
    # Wider background merges: with the default base (5) each row of a steady log stream was
    # rewritten by more merge levels. At 20, writing 600,000 rows and letting merges settle cost
    # chDB 14.6 µs of CPU a row instead of 21.8 (the exporter's largest single cost), for a few more
    # parts per partition (8 instead of 4 there). Reads of a time range touch a few more parts.
    #
    # Compact parts up to 256 MiB (ClickHouse's default switches to Wide at 10 MiB). A Wide part is
    # a file per column and subcolumn, about 190 files here, against about 14 for a Compact one,
    # and on this machine's ext4 creating them dominated the insert: 5,000 rows with 2 KB of bodies
    # (15 MiB) cost chDB 36-47 µs of CPU a row as a Wide part against 10-12 as a Compact one
    # (benchmarks/micro/bench_chdb_parts.py); with 1 KB (9 MiB) the same insert was Compact anyway,
    # so the exporter's cost per record jumped with the size of the bodies. Merging Compact parts
    # cost less too. What it costs: a scan of a whole body column over parts not yet merged past
    # 256 MiB reads 2-5x slower (the request log's text search over recent rows). Merged parts
    # past 256 MiB become Wide, the layout that long range reads of a few columns want.
    settings=(("merge_selector_base", 20), ("min_bytes_for_wide_part", 256 << 20)),
)

# Feedback and scores are not partitioned: they may arrive months after the request, and
# ReplacingMergeTree only collapses duplicates within one partition. Their version is created_at,
# so the latest rating / score for a key wins whatever order the batches land in.
FEEDBACK = Table(
    name="feedback",
    columns=(
        Column("request_id", "UUID", required=True),
        Column("created_at", _TS, required=True),
        Column("rating", "Nullable(Bool)", None),
    ),
    engine="ReplacingMergeTree(created_at)",
    order_by="request_id",
)

SCORES = Table(
    name="scores",
    columns=(
        Column("request_id", "UUID", required=True),
        Column("name", "LowCardinality(String)", required=True),
        Column("value", "Float64", 0.0),  # booleans are stored as 0/1 with is_bool set
        Column("is_bool", "Bool", False),
        Column("created_at", _TS, required=True),
    ),
    engine="ReplacingMergeTree(created_at)",
    order_by="(request_id, name)",
)

TABLES: tuple[Table, ...] = (REQUESTS, FEEDBACK, SCORES)


def quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def body_ttl_clause(days: int) -> str:
    """Column TTL: once expired, merges reset the body to '' while the row and its numbers stay.

    ``toDateTime`` keeps the expression valid on servers older than DateTime64 TTL support; the
    text matches how ClickHouse prints it back, which ``plan`` relies on to detect a change.
    """
    return f"TTL toDateTime(created_at) + toIntervalDay({int(days)})" if days > 0 else ""


def column_sql(col: Column, body_ttl_days: int = 0) -> str:
    parts = [quote_ident(col.name), col.type]
    if col.sql_default is not None:
        parts.append(f"DEFAULT {col.sql_default}")
    if col.body and body_ttl_days > 0:
        parts.append(body_ttl_clause(body_ttl_days))
    return " ".join(parts)


def create_database_sql(database: str) -> str:
    return f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)}"


def table_settings(table: Table, known: frozenset[str] | None) -> list[str]:
    """``name = value`` for the table's settings the server knows (``known``; None: assume all)."""
    return [f"{name} = {int(value)}" for name, value in table.settings if known is None or name in known]


def create_table_sql(
    table: Table, database: str = DEFAULT_DATABASE, body_ttl_days: int = 0,
    dedup_window: int = DEFAULT_DEDUP_WINDOW, known_settings: frozenset[str] | None = None,
) -> str:
    defs = [column_sql(c, body_ttl_days) for c in table.columns] + list(table.indexes)
    lines = [f"CREATE TABLE IF NOT EXISTS {quote_ident(database)}.{quote_ident(table.name)} (",
             ",\n".join("    " + d for d in defs), f") ENGINE = {table.engine}"]
    if table.partition_by:
        lines.append(f"PARTITION BY {table.partition_by}")
    if table.primary_key:
        lines.append(f"PRIMARY KEY {table.primary_key}")
    lines.append(f"ORDER BY {table.order_by}")
    settings = table_settings(table, known_settings)
    if dedup_window > 0:
        settings.insert(0, f"non_replicated_deduplication_window = {int(dedup_window)}")
    if settings:
        lines.append("SETTINGS " + ", ".join(settings))
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class TableState:
    """What the server has now: column name → type, and its CREATE statement as printed back."""

    columns: dict[str, str]
    create_query: str
    engine: str


@dataclass(slots=True)
class Plan:
    statements: list[str]
    warnings: list[str]


_TTL_RE = r"{col} {type}[^,]*? TTL toDateTime\(created_at\) \+ toIntervalDay\((\d+)\)"


def _current_ttl_days(create_query: str, col: Column) -> int | None:
    """Days of the body TTL in a CREATE statement; 0 when there is none, None if unrecognised."""
    head = re.search(re.escape(f"{quote_ident(col.name)} {col.type}") + r"[^,]*", create_query)
    if head is None or " TTL " not in head.group(0):
        return 0
    m = re.search(_TTL_RE.format(col=re.escape(quote_ident(col.name)), type=re.escape(col.type)),
                  create_query)
    return int(m.group(1)) if m else None


def plan(
    state: dict[str, TableState], database: str = DEFAULT_DATABASE, body_ttl_days: int = 0,
    dedup_window: int = DEFAULT_DEDUP_WINDOW, known_settings: frozenset[str] | None = None,
) -> Plan:
    """The statements that bring ``state`` (table name → TableState) up to this schema.

    Pure, so it is testable without a server. Every statement is safe to repeat.
    """
    db = quote_ident(database)
    out = Plan([create_database_sql(database)], [])
    for table in TABLES:
        qualified = f"{db}.{quote_ident(table.name)}"
        current = state.get(table.name)
        if current is None:
            out.statements.append(create_table_sql(table, database, body_ttl_days, dedup_window, known_settings))
            continue
        previous: str | None = None
        ttl_changes: list[str] = []
        for col in table.columns:
            have = current.columns.get(col.name)
            if have is None:
                after = f" AFTER {quote_ident(previous)}" if previous else " FIRST"
                out.statements.append(
                    f"ALTER TABLE {qualified} ADD COLUMN IF NOT EXISTS "
                    f"{column_sql(col, body_ttl_days)}{after}")
            else:
                if have != col.type:
                    out.warnings.append(
                        f"{database}.{table.name}.{col.name} is {have}, the schema says {col.type}; "
                        "left as is (migrations are additive)")
                if col.body and have == col.type:
                    days = _current_ttl_days(current.create_query, col)
                    if days != body_ttl_days:
                        ttl_changes.append(
                            f"MODIFY COLUMN {quote_ident(col.name)} {col.type} "
                            f"{body_ttl_clause(body_ttl_days)}" if body_ttl_days > 0
                            else f"MODIFY COLUMN {quote_ident(col.name)} REMOVE TTL")
            previous = col.name
        for index in table.indexes:  # e.g. "INDEX idx_request_id request_id TYPE ..."
            if f"INDEX {index.split()[1]} " not in current.create_query:
                out.statements.append(f"ALTER TABLE {qualified} ADD {index.replace('INDEX', 'INDEX IF NOT EXISTS', 1)}")
        if ttl_changes:  # one ALTER, so both bodies are reset by a single background mutation
            out.statements.append(f"ALTER TABLE {qualified} " + ", ".join(ttl_changes))
        setting = f"non_replicated_deduplication_window = {int(dedup_window)}"
        if (dedup_window > 0 and current.engine.endswith("MergeTree")
                and not current.engine.startswith(("Replicated", "Shared"))
                and setting not in current.create_query):
            out.statements.append(f"ALTER TABLE {qualified} MODIFY SETTING {setting}")
        # Only settings the table has no value for: one set by hand (min_bytes_for_wide_part is
        # commonly tuned) or by an earlier version stays as it is.
        missing = [s for s in table_settings(table, known_settings)
                   if not re.search(rf"(?<!\w){re.escape(s.split(' = ')[0])} = ", current.create_query)]
        if missing and current.engine.endswith("MergeTree"):
            out.statements.append(f"ALTER TABLE {qualified} MODIFY SETTING {', '.join(missing)}")
    return out


class _Client(Protocol):  # the slice of clickhouse_connect's Client that migrate uses
    def command(self, cmd: str, parameters: Any = ..., settings: Any = ...) -> Any: ...
    def query(self, query: str, parameters: Any = ..., settings: Any = ...) -> Any: ...


def read_state(client: _Client, database: str = DEFAULT_DATABASE) -> dict[str, TableState]:
    names = [t.name for t in TABLES]
    params = {"db": database, "names": names}
    tables = client.query(
        "SELECT name, create_table_query, engine FROM system.tables "
        "WHERE database = {db:String} AND has({names:Array(String)}, name)", parameters=params,
    ).result_rows
    columns = client.query(
        "SELECT table, name, type FROM system.columns "
        "WHERE database = {db:String} AND has({names:Array(String)}, table) ORDER BY table, position",
        parameters=params,
    ).result_rows
    by_table: dict[str, dict[str, str]] = {}
    for table, name, type_ in columns:
        by_table.setdefault(table, {})[name] = type_
    return {name: TableState(by_table.get(name, {}), query, engine) for name, query, engine in tables}


def known_table_settings(client: _Client) -> frozenset[str]:
    """Which of our tables' MergeTree settings this server has (older servers lack newer ones)."""
    wanted = sorted({name for table in TABLES for name, _ in table.settings})
    if not wanted:
        return frozenset()
    rows = client.query("SELECT name FROM system.merge_tree_settings WHERE has({names:Array(String)}, name)",
                        parameters={"names": wanted}).result_rows
    return frozenset(r[0] for r in rows)


def migrate(
    client: _Client, database: str = DEFAULT_DATABASE, body_ttl_days: int = 0,
    dedup_window: int = DEFAULT_DEDUP_WINDOW,
) -> Plan:
    """Create or upgrade the schema; returns what was run (and what was left alone, as warnings).

    Cheap when nothing changed (two system-table reads plus CREATE DATABASE IF NOT EXISTS), so it
    runs at every open. A body TTL change is an ALTER that materializes in the background.
    """
    client.command(create_database_sql(database))
    todo = plan(read_state(client, database), database, body_ttl_days, dedup_window, known_table_settings(client))
    for statement in todo.statements[1:]:
        client.command(statement)
    return todo
