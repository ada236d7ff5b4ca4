"""Keys and spend in one SQLite file: shared by every worker and the CLI on one host.

The chDB folder cannot hold them (its one process at a time is the exporter), and a file needs no
server. WAL mode lets readers run while one writer commits, and every charge is one
``BEGIN IMMEDIATE`` transaction of upserts, so counters never lose an increment between processes.

On the event loop: reads are one primary-key lookup on a local file (tens of microseconds, and in
WAL mode a reader never waits for a writer), so they run inline. Writes can wait on another
process's write lock (up to ``busy_timeout``), so charges go to one writer thread with its own
connection, never blocking the loop; so does opening the file, which may create the schema.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastgw.keys.record import KeyRecord
from fastgw.keys.store import StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (key_hash TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spend (cell TEXT PRIMARY KEY, nanousd INTEGER NOT NULL);
"""
_CHARGE = ("INSERT INTO spend (cell, nanousd) VALUES (?, ?) "
           "ON CONFLICT (cell) DO UPDATE SET nanousd = nanousd + excluded.nanousd")


def _connect(path: str) -> sqlite3.Connection:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    _use_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across crashes of the process
    conn.executescript(_SCHEMA)
    return conn


def _use_wal(conn: sqlite3.Connection, within_s: float = 5.0) -> None:
    """Switch the file to WAL (it stays so): SQLite answers a journal-mode switch that meets another
    process's lock with "database is locked" at once, without its busy handler, so processes opening
    a new file together (workers at start) retry for a bounded time; once one has switched it, the
    others find WAL already on."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class SqliteKeyStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._reader: sqlite3.Connection | None = None  # used on the event loop only
        self._writer: sqlite3.Connection | None = None  # used on the writer thread only
        self._thread: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"SqliteKeyStore({self.path!r}, open={self._reader is not None})"

    async def _read_conn(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader = await self._in_thread(self._open_now)
        return self._reader

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="fastgw-keys")
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _open_now(self) -> sqlite3.Connection:
        try:
            return _connect(self.path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open key store {self.path}: {exc}") from exc

    async def _write(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        await self._in_thread(self._write_now, sql, rows)

    def _write_now(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        try:
            if self._writer is None:
                self._writer = self._open_now()
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(sql, rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"key store {self.path}: {exc}") from exc

    async def put(self, record: KeyRecord) -> None:
        await self._write("INSERT OR REPLACE INTO keys (key_hash, record) VALUES (?, ?)",
                          [(record.key_hash, record.to_json().decode())])

    async def get(self, key_hash: str) -> KeyRecord | None:
        try:
            row = (await self._read_conn()).execute("SELECT record FROM keys WHERE key_hash = ?", (key_hash,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"key store {self.path}: {exc}") from exc
        return KeyRecord.from_json(row[0]) if row else None

    async def all(self) -> list[KeyRecord]:
        rows = (await self._read_conn()).execute("SELECT record FROM keys").fetchall()
        return sorted((KeyRecord.from_json(r[0]) for r in rows), key=lambda r: r.created_at)

    async def read(self, cells: list[str]) -> list[int]:
        if not cells:
            return []
        marks = ",".join("?" * len(cells))
        try:
            rows = (await self._read_conn()).execute(f"SELECT cell, nanousd FROM spend WHERE cell IN ({marks})", cells).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"key store {self.path}: {exc}") from exc
        found = dict(rows)
        return [found.get(c, 0) for c in cells]

    async def charge(self, cells: list[tuple[str, int]], nano: int) -> None:
        if cells and nano:
            await self._write(_CHARGE, [(cell, nano) for cell, _ttl in cells])

    async def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
        for conn in (self._reader, self._writer):
            if conn is not None:
                conn.close()
        self._reader = self._writer = None
