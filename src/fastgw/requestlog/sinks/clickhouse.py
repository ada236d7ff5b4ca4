"""The ClickHouse sink: ``chdb:///path`` (in-process chDB) and ``http(s)://user:pass@host:8123/db``.

One code path for both, through clickhouse-connect, so the embedded default and a real server
behave alike. ``open`` connects and runs ``schema.migrate`` (create or add columns, set the body
TTL). ``write`` turns each kind's rows into one ClickHouse Native block (``_native.nativeblock``,
no DESCRIBE round trip: the types come from ``schema``) and inserts it into its table with the
batch id as ``insert_deduplication_token``, so a batch re-sent after a crash, or after a failure
halfway through its tables, is dropped by the server instead of doubling counts. A ClickHouse
server (whose inserts clickhouse-connect compresses), a chDB that cannot convert types on Native
input (``input_format_native_allow_types_conversion``, which lets LowCardinality columns arrive as
plain String), or a build without the compiled encoder goes through clickhouse-connect's own
encoder with column lists instead.

chDB locks its data folder to ONE process (and one folder per process): run a single exporter per
folder, and point several gateway hosts at an http(s) server instead.

Failures are sorted for the exporter: unreachable, timed out, overloaded, out of memory or disk,
the chDB folder held by another process → ``SinkError`` (retry later); a malformed row or a schema
conflict → the original exception (retrying cannot help).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.exceptions import (
    DatabaseError,
    OperationalError,
    ProgrammingError,
)

from fastgw import _native
from fastgw._native import nativeblock
from fastgw._native._pure.nativeblock import epoch_ms, uuid_int
from fastgw.requestlog import schema
from fastgw.requestlog.sinks.base import (
    KIND_FEEDBACK,
    KIND_REQUEST,
    KIND_SCORE,
    PreparedWrites,
    SinkError,
    SinkOptions,
    split_by_kind,
    url_path,
)
from fastgw.requestlog.sinks.chdb_threads import BackgroundPriority, MergeDeferral

log = logging.getLogger(__name__)

DEFAULT_CHDB_PATH = "./fastgw-data"
_TABLES = {KIND_REQUEST: schema.REQUESTS, KIND_FEEDBACK: schema.FEEDBACK, KIND_SCORE: schema.SCORES}
_BY_NAME = {table.name: table for table in _TABLES.values()}
# Each table's columns parsed once for the Native block encoder.
_BLOCK_SPECS = {table.name: nativeblock.layout([(c.name, c.type, c.default, c.required) for c in table.insert_columns])
                for table in _TABLES.values()}

# ClickHouse error codes that describe the server's state, not the query: worth a retry.
TRANSIENT_CODES = frozenset({
    3,     # UNEXPECTED_END_OF_FILE
    32,    # ATTEMPT_TO_READ_AFTER_EOF
    76,    # CANNOT_OPEN_FILE (chDB: folder locked by another process)
    159,   # TIMEOUT_EXCEEDED
    160,   # TOO_SLOW
    202,   # TOO_MANY_SIMULTANEOUS_QUERIES
    203,   # NO_FREE_CONNECTION
    209,   # SOCKET_TIMEOUT
    210,   # NETWORK_ERROR
    236,   # ABORTED
    241,   # MEMORY_LIMIT_EXCEEDED
    242,   # TABLE_IS_READ_ONLY
    243,   # NOT_ENOUGH_SPACE
    252,   # TOO_MANY_PARTS
    285,   # TOO_FEW_LIVE_REPLICAS
    319,   # UNKNOWN_STATUS_OF_INSERT
    394,   # QUERY_WAS_CANCELLED
    425,   # SYSTEM_ERROR
    439,   # CANNOT_SCHEDULE_TASK
    516,   # AUTHENTICATION_FAILED (a rotated password: keep the data until it is fixed)
    999,   # KEEPER_EXCEPTION
    1000,  # POCO_EXCEPTION
})
# ReplacingMergeTree would otherwise collapse equal keys inside each inserted block, which means a
# replacing merge of every batch before it is written: about a sixth of the insert's CPU per row with
# 1 KB bodies (chDB 4.4, 2,500-row inserts: median 19.3 µs instead of 23.4 µs of process CPU). A batch holds one row per request (a re-sent batch is dropped whole
# by its deduplication token), and any copy that still slips in is collapsed by background merges and
# FINAL, as the schema's readers already assume, so the insert-time pass buys nothing.
INSERT_SETTINGS: dict[str, Any] = {"optimize_on_insert": 0}
# The table or database vanished under us (dropped by hand): recreate at the next write.
SCHEMA_GONE_CODES = frozenset({60, 81})  # UNKNOWN_TABLE, UNKNOWN_DATABASE


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (OperationalError, OSError, TimeoutError)):
        return True  # transport: refused, reset, timed out, TLS, chDB stream failures
    if isinstance(exc, DatabaseError):
        code = getattr(exc, "code", None)
        if code is None:  # an HTTP error without a ClickHouse code: a proxy/load balancer (5xx)
            return not isinstance(exc, ProgrammingError) and type(exc) is DatabaseError
        return code in TRANSIENT_CODES or code in SCHEMA_GONE_CODES
    return False


# --- column building -------------------------------------------------------------------------

# clickhouse-connect picks the encoding from a column's first value, so mixed inputs (str and
# UUID, datetime and float) are normalised here to the one form it writes fastest: integers. The
# conversions are the Native block encoder's own, so both paths accept and refuse the same values.
_CONVERT = {"UUID": uuid_int, "DateTime64(3, 'UTC')": epoch_ms}


def build_columns(table: schema.Table, rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Column-oriented data for ``table.insert_columns``: one list per column, defaults applied.

    A key that is missing or None takes the column's default (Nullable columns keep None);
    required columns (ids, timestamps) raise ValueError instead, see ``schema.Column``.
    """
    out: list[list[Any]] = []
    for col in table.insert_columns:
        name = col.name
        if col.required:
            values = [r.get(name) for r in rows]
            if any(v is None for v in values):
                raise ValueError(f"a {table.name} row has no {name}; it is required")
        elif col.nullable:
            values = [r.get(name) for r in rows]
        else:
            default = col.default
            values = [default if (v := r.get(name)) is None else v for r in rows]
        convert = _CONVERT.get(col.type)
        if convert is not None:
            values = [convert(name, v, i) for i, v in enumerate(values)]
        out.append(values)
    return out


def score_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A bool score is stored as 0/1 and flagged, unless told otherwise."""
    return [{**r, "is_bool": isinstance(r.get("value"), bool) or bool(r.get("is_bool")),
             "value": float(r.get("value") or 0.0)} for r in rows]


# --- the sink --------------------------------------------------------------------------------

def encode_native(rows: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """Rows of every kind as one Native block per table (requests first). A bad row raises."""
    return [(_TABLES[kind].name, nativeblock.encode_block(_BLOCK_SPECS[_TABLES[kind].name],
                                                          score_rows(kind_rows) if kind == KIND_SCORE else kind_rows))
            for kind, kind_rows in split_by_kind(rows).items() if kind_rows]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch encoded by ``ClickHouseSink.prepare``: per table, a Native block or column lists."""

    # Kept to encode again if the connection's kind of block changed; None for blocks made by the
    # exporter's helpers (``prepared_from``).
    rows: list[dict[str, Any]] | None
    native: bool
    tables: list[tuple[schema.Table, Any]]


# Merges are not deferred (chdb_threads.MergeDeferral) while a partition of the request table has
# more active parts than this (ClickHouse starts delaying inserts at 1,000 parts in a partition),
# counted every PARTS_CHECK_EVERY seconds while the exporter wants them deferred.
MAX_DEFERRED_PARTS = 300
PARTS_CHECK_EVERY = 10.0


class ClickHouseSink(PreparedWrites):
    def __init__(self, *, options: SinkOptions | None = None, chdb_path: str | None = None,
                 host: str | None = None, port: int | None = None, username: str = "default",
                 password: str = "", secure: bool = False, database: str | None = None) -> None:
        if (chdb_path is None) == (host is None):
            raise ValueError("give exactly one of chdb_path or host")
        self.options = options or SinkOptions()
        self.chdb_path = os.path.abspath(chdb_path) if chdb_path is not None else None
        self.host, self.port, self.secure = host, port, secure
        self.username, self.password = username, password
        self.database = database or self.options.database
        self.client: Any = None
        self.dedup_tokens = False  # set at open: does this server honour insert_deduplication_token?
        self.native_blocks = False  # set at open: may LowCardinality columns arrive as String?
        self.migration: schema.Plan | None = None
        self._schema_ready = False
        self._lock = threading.Lock()  # chDB handles and HTTP sessions are not for concurrent use
        # In-process chDB: its merge threads yield the CPU to the exporter (see chdb_threads).
        self.background = BackgroundPriority() if chdb_path is not None else None
        # Whether merges should wait (MergeDeferral, from the exporter's ``backlog``); applied by
        # the writing thread after a write, or at once when it is idle. chDB only.
        self.merge_deferral = MergeDeferral()
        self.defer_merges = False
        self._merges_stopped = False  # what chDB was last told
        self._parts_checked, self._parts_over = float("-inf"), False

    @classmethod
    def from_url(cls, url: str, options: SinkOptions | None = None) -> "ClickHouseSink":
        options = options or SinkOptions()
        scheme = url.split(":", 1)[0].lower()
        if scheme == "chdb":
            return cls(options=options, chdb_path=url_path(url, DEFAULT_CHDB_PATH))
        parts = urlsplit(url)
        if parts.query or parts.fragment:
            raise ValueError(f"ClickHouse URL takes no query or fragment: {url!r}")
        if not parts.hostname:
            raise ValueError(f"ClickHouse URL has no host: {url!r}")
        database = unquote(parts.path.strip("/")) or None
        if database and "/" in database:
            raise ValueError(f"ClickHouse URL path must be a single database name: {url!r}")
        secure = scheme == "https"
        return cls(options=options, host=parts.hostname, port=parts.port or (8443 if secure else 8123),
                   username=unquote(parts.username or "default"), password=unquote(parts.password or ""),
                   secure=secure, database=database)

    def __repr__(self) -> str:  # never the password
        where = f"chdb:{self.chdb_path}" if self.chdb_path else f"{self.host}:{self.port}"
        return f"ClickHouseSink({where}, database={self.database!r})"

    # -- lifecycle

    def open(self) -> None:
        with self._lock:
            self._ensure_ready()

    def _ensure_ready(self) -> None:
        """Connect and migrate; on any failure leave nothing half-open (chDB holds its folder)."""
        if self.client is None:
            self.client = self._connect()
        try:
            self._prepare()
        except BaseException:
            self._close_client()
            raise

    def _connect(self) -> Any:
        try:
            if self.chdb_path is not None:
                os.makedirs(self.chdb_path, exist_ok=True)
                return clickhouse_connect.get_client(interface="chdb", path=self.chdb_path)
            return clickhouse_connect.get_client(
                host=self.host, port=self.port, username=self.username, password=self.password,
                secure=self.secure, connect_timeout=self.options.connect_timeout,
                send_receive_timeout=self.options.send_receive_timeout,
                # One try per call: the exporter owns retries and their backoff.
                query_retries=0, autogenerate_session_id=False,
            )
        except ProgrammingError as exc:
            if self.chdb_path is not None:  # chDB reports a folder locked elsewhere this way
                raise SinkError(f"cannot open chDB at {self.chdb_path} (another process may hold "
                                f"it; chDB allows one per folder): {exc}") from exc
            raise
        except (DatabaseError, OSError) as exc:
            if is_transient(exc):
                raise SinkError(f"cannot connect to ClickHouse {self!r}: {exc}") from exc
            raise

    def _prepare(self) -> None:
        try:
            self.migration = schema.migrate(self.client, self.database, self.options.body_ttl_days,
                                            self.options.dedup_window)
            self.dedup_tokens = self._tokens_supported()
            # The pure twin writes a block slower (22 µs a row) than clickhouse-connect (15): it is
            # used only when compiled (3.6 µs a row). Only into chDB: to a server, clickhouse-connect's
            # own insert compresses the body (lz4), which a raw block would cross the network without.
            self.native_blocks = _native.NATIVE and self.chdb_path is not None and bool(self.client.query(
                "SELECT count() FROM system.settings WHERE name = 'input_format_native_allow_types_conversion' "
                "AND value = '1'").result_rows[0][0])
        except (DatabaseError, OSError) as exc:
            if is_transient(exc):
                raise SinkError(f"ClickHouse schema setup failed on {self!r}: {exc}") from exc
            raise
        for warning in self.migration.warnings:
            log.warning("request log schema: %s", warning)
        for statement in self.migration.statements[1:]:
            log.info("request log schema: %s", statement.splitlines()[0])
        self._schema_ready = True

    def _tokens_supported(self) -> bool:
        """Tokens dedup on replicated engines, and on plain MergeTree only with a window set."""
        has_setting = self.client.query(
            "SELECT count() FROM system.settings WHERE name = 'insert_deduplication_token'"
        ).result_rows[0][0]
        if not has_setting:  # servers before 22.2
            return False
        state = schema.read_state(self.client, self.database)[schema.REQUESTS.name]
        if state.engine.startswith(("Replicated", "Shared")):
            return True
        window = re.search(r"non_replicated_deduplication_window = (\d+)", state.create_query)
        return window is not None and int(window.group(1)) > 0

    def close(self) -> None:
        with self._lock:
            self._close_client()

    def _close_client(self) -> None:
        client, self.client = self.client, None
        self._schema_ready = False
        self._merges_stopped = False  # a new engine starts with its merges running
        if client is not None:
            try:
                client.close()  # chDB: frees the engine so this process may open another folder
            except Exception:  # closing must not mask the error that led here
                log.debug("closing the ClickHouse client failed", exc_info=True)

    # -- writing

    def prepare(self, rows: list[dict[str, Any]]) -> Prepared:
        """Every table's rows encoded (a bad row fails the batch with nothing stored): Native blocks
        when the connection takes them (chDB), else columns for clickhouse-connect to encode."""
        if self.native_blocks:
            return Prepared(rows, True, [(_BY_NAME[name], block) for name, block in encode_native(rows)])
        by_kind = {kind: score_rows(kind_rows) if kind == KIND_SCORE else kind_rows
                   for kind, kind_rows in split_by_kind(rows).items() if kind_rows}
        return Prepared(rows, False, [(_TABLES[kind], build_columns(_TABLES[kind], kind_rows))
                                      for kind, kind_rows in by_kind.items()])

    @property
    def helper_prepare(self) -> Callable[[list[dict[str, Any]]], list[tuple[str, bytes]]] | None:
        """What a prepare helper process runs (``exporter_helpers``): a module function from rows to
        bytes, so its result crosses a pipe cheaply. Only for Native blocks (chDB); clickhouse-connect's
        columns for a server are Python objects, not worth sending between processes."""
        return encode_native if self.native_blocks else None

    def prepared_from(self, parts: list[list[tuple[str, bytes]]]) -> Prepared:
        """One write from ``helper_prepare`` results, in order: a table's blocks follow one another in
        one insert (ClickHouse reads a Native stream block by block and writes one part)."""
        blocks: dict[str, list[bytes]] = {}
        for part in parts:
            for name, block in part:
                blocks.setdefault(name, []).append(block)
        return Prepared(None, True, [(_BY_NAME[name], b"".join(pieces)) for name, pieces in blocks.items()])

    def write_prepared(self, prepared: Prepared, batch_id: str) -> None:
        if not prepared.tables:
            return
        with self._lock:
            if self.client is None or not self._schema_ready:
                self._ensure_ready()  # never opened, failed to, or the table was dropped
            if prepared.native != self.native_blocks:  # prepared before the sink (re)opened
                if prepared.rows is None:  # blocks from helpers: the exporter reads the batch again
                    raise SinkError("the batch was encoded for another kind of connection; encoding it again")
                prepared = self.prepare(prepared.rows)
            for table, data in prepared.tables:
                self._insert(table, data, batch_id)
            if self.background is not None:
                self.background.apply()  # new merge threads appear as chDB needs them
                self._apply_merge_wish()

    def backlog(self, behind: bool, caught_up: bool, writing: bool) -> None:
        """chDB's merges wait while the exporter is behind (see ``MergeDeferral``). With no write to
        follow, the change is made now: merges start again after a burst even if no record follows."""
        if self.background is None:
            return
        self.defer_merges = self.merge_deferral.update(behind, caught_up)
        if writing or self.defer_merges == self._merges_stopped:
            return
        with self._lock:
            if self.client is not None and self._schema_ready:
                self._apply_merge_wish()

    def _apply_merge_wish(self) -> None:
        """Under the lock: merges stopped or started as wished, unless the parts forbid waiting."""
        stop = self.defer_merges and not self._too_many_parts()
        if stop != self._merges_stopped:
            self._switch_merges(stop)

    def _too_many_parts(self) -> bool:
        """A partition of the request table holds over MAX_DEFERRED_PARTS active parts: merges must
        run whatever the exporter wishes. Asked again every PARTS_CHECK_EVERY seconds at most."""
        now = time.monotonic()
        if now >= self._parts_checked + PARTS_CHECK_EVERY:
            self._parts_checked = now
            try:
                parts = self.client.query(
                    "SELECT max(n) FROM (SELECT count() AS n FROM system.parts WHERE active AND "
                    "database = {db:String} AND table = {t:String} GROUP BY partition)",
                    parameters={"db": self.database, "t": schema.REQUESTS.name}).result_rows[0][0]
                self._parts_over = parts > MAX_DEFERRED_PARTS
            except Exception as exc:
                log.warning("could not count the parts of %s.%s: %s", self.database, schema.REQUESTS.name, exc)
                self._parts_over = True
        return self._parts_over

    def _switch_merges(self, stop: bool) -> None:
        """``SYSTEM STOP|START MERGES`` on the request table; a failure only costs the optimisation."""
        where = f"{schema.quote_ident(self.database)}.{schema.quote_ident(schema.REQUESTS.name)}"
        try:
            self.client.command(f"SYSTEM {'STOP' if stop else 'START'} MERGES {where}")
        except Exception as exc:  # never a reason to fail a write that succeeded, or the loop
            log.warning("could not %s merges on %s: %s", "stop" if stop else "start", where, exc)
            return
        self._merges_stopped = stop

    def _insert(self, table: schema.Table, data: Any, batch_id: str) -> None:
        """``data``: a Native block (bytes), or column lists for clickhouse-connect to encode."""
        cols = table.insert_columns
        settings: dict[str, Any] = dict(INSERT_SETTINGS)
        if self.dedup_tokens:
            # Tokens are remembered per table, so the same batch id serves all three tables.
            settings.update(insert_deduplicate=1, insert_deduplication_token=batch_id)
        where = f"{schema.quote_ident(self.database)}.{schema.quote_ident(table.name)}"
        try:
            if isinstance(data, bytes):
                self.client.raw_insert(where, [c.name for c in cols], insert_block=data, fmt="Native",
                                       settings=settings)
            else:
                self.client.insert(where, data, column_names=[c.name for c in cols],
                                   column_type_names=[c.type for c in cols], column_oriented=True,
                                   settings=settings)
        except (DatabaseError, OSError) as exc:
            if not is_transient(exc):
                raise
            if getattr(exc, "code", None) in SCHEMA_GONE_CODES:
                self._schema_ready = False
            raise SinkError(f"insert of batch {batch_id} into {self.database}.{table.name} "
                            f"failed: {exc}") from exc
