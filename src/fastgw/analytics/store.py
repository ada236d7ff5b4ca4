"""The admin server's own read connection to the log store.

The exporter's sink writes on its thread; the admin server reads on its own client so that a
slow dashboard query never holds the sink's lock (and so never stalls a batch). For chDB that is a
second handle on the same folder: chDB allows one engine per process but any number of handles on
it, and queries on one handle run while another inserts (measured: queries and 2,500-row inserts
interleave without errors or lost rows). For a ClickHouse server it is a second HTTP client.

A small pool of handles serves the admin requests (see ``LogStore``).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from fastgw.errors import GatewayError
from fastgw.requestlog import schema
from fastgw.requestlog.sinks.clickhouse import SCHEMA_GONE_CODES, ClickHouseSink

log = logging.getLogger("fastgw.admin")

# Reads only, bounded: a runaway query gives up instead of eating the exporter's process, and a
# query uses at most half the cores, so the exporter's batches keep some (benchmarks/bench_admin.py
# measures a batch's write time with and without readers).
READ_SETTINGS = {
    "readonly": 2,
    "max_execution_time": 30,
    "max_threads": max(1, (os.cpu_count() or 2) // 2),
    "do_not_merge_across_partitions_select_final": 1,
}


class StoreUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "log_store_unavailable"


class LogStore:
    """Runs parameterised reads against ``<database>.requests`` and its neighbours.

    Up to ``handles`` reads run at once, each on its own client (a client is not for concurrent
    use). One is the default: ClickHouse already spreads a query over every core, and on the
    2-core test machine the dashboard's 16 calls took longer with two handles than with one
    (benchmarks/bench_admin.py --handles), while a second reader also takes CPU from the exporter.
    """

    def __init__(self, sink_url: str, handles: int = 1) -> None:
        scheme = sink_url.split(":", 1)[0].lower()
        # None: the sink is not ClickHouse (jsonl, none), so there is nothing to query.
        self.target = ClickHouseSink.from_url(sink_url) if scheme in ("chdb", "http", "https") else None
        self.database = self.target.database if self.target else schema.DEFAULT_DATABASE
        self.kind = scheme if scheme in ("chdb", "jsonl", "none") else "clickhouse"
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(handles)
        self._open: list[Any] = []
        self._lock = threading.Lock()  # guards _open

    def __repr__(self) -> str:
        return f"LogStore({self.target!r}, handles={len(self._open)})"

    def table(self, name: str) -> str:
        """A qualified table name; ``name`` comes from ``schema``, never from a request."""
        return f"{schema.quote_ident(self.database)}.{schema.quote_ident(name)}"

    def rows(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self._slots:
            try:
                client = self._idle.get_nowait()
            except queue.Empty:
                client = self._connect()
            try:
                result = client.query(sql, parameters=params, settings=READ_SETTINGS).result_rows
            except DatabaseError as exc:
                if isinstance(exc, OperationalError):
                    self._discard(client)
                    raise StoreUnavailable(f"the log store did not answer: {exc}") from exc
                self._idle.put(client)
                if getattr(exc, "code", None) in SCHEMA_GONE_CODES:
                    raise StoreUnavailable("the request log has no tables yet (nothing logged so far)") from exc
                raise
            except BaseException:
                self._discard(client)
                raise
            self._idle.put(client)
            return result

    def _connect(self) -> Any:
        t = self.target
        if t is None:
            raise StoreUnavailable(f"the query API reads ClickHouse or chDB; logging.sink is {self.kind}")
        try:
            if t.chdb_path is not None:
                os.makedirs(t.chdb_path, exist_ok=True)
                client = clickhouse_connect.get_client(interface="chdb", path=t.chdb_path)
            else:
                client = clickhouse_connect.get_client(
                    host=t.host, port=t.port, username=t.username, password=t.password,
                    secure=t.secure, connect_timeout=5, send_receive_timeout=35,
                    autogenerate_session_id=False)
        except Exception as exc:
            raise StoreUnavailable(f"cannot open the log store {t!r}: {exc}") from exc
        with self._lock:
            self._open.append(client)
        return client

    def _discard(self, client: Any) -> None:
        with self._lock:
            if client in self._open:
                self._open.remove(client)
        try:
            client.close()
        except Exception:
            log.debug("closing an admin client failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            clients, self._open = self._open, []
        for client in clients:
            try:
                client.close()
            except Exception:
                log.debug("closing an admin client failed", exc_info=True)
