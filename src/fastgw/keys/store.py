"""Where keys and spend live: the one interface both stores implement, and the choice between them.

Both stores are async so the worker and the CLI share one implementation (the CLI runs it under
``asyncio.run``). Keys are found by the SHA-256 of the key text; spend counters by cell name
(keys/budget.py). Records are written whole (``put``): the CLI is their only writer. Counters are
only ever incremented, atomically, by ``charge``.
"""

from __future__ import annotations

from typing import Protocol

from fastgw.keys.record import KeyRecord


class StoreError(Exception):
    """The store could not answer (Redis down or slow, SQLite file unreadable)."""


class KeyStore(Protocol):
    async def put(self, record: KeyRecord) -> None:
        """Insert the record, or replace the one with its hash."""

    async def get(self, key_hash: str) -> KeyRecord | None:
        """The record for a key's hash; None when no key has that hash (revoked ones are returned)."""

    async def all(self) -> list[KeyRecord]: ...

    async def read(self, cells: list[str]) -> list[int]:
        """The committed spend of each counter, in nano-USD (0 for one never charged)."""

    async def charge(self, cells: list[tuple[str, int]], nano: int) -> None:
        """Add ``nano`` to every (cell, ttl seconds; 0 = forever) counter, all or none."""

    async def close(self) -> None: ...


def open_store(backend: str, timeout: float = 1.0) -> KeyStore:
    """``sqlite://PATH`` or ``redis://host:port/db`` (validated by config)."""
    if backend.startswith("sqlite://"):
        from fastgw.keys.sqlite_store import SqliteKeyStore

        return SqliteKeyStore(backend[len("sqlite://"):])
    from fastgw.keys.redis_store import RedisKeyStore

    return RedisKeyStore(backend, timeout)
