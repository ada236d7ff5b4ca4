"""Who a request is: a gateway key resolved against config, and each worker's short-lived cache of them.

A ``Principal`` is what ``ctx.principal`` holds: the key's record made ready for use (policies
parsed, model globs compiled, budgets as counters, credential names resolved to provider keys).
Building one costs microseconds, so a worker keeps each for ``keys.cache_ttl``; the price is that a
revoked key keeps working in a worker for up to that long after ``fastgw keys revoke``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from fastgw.errors import KeyStoreUnavailable, Unauthorized
from fastgw.keys.budget import Cap, caps_for
from fastgw.keys.record import Budget, KeyRecord, ModelMatcher
from fastgw.keys.store import KeyStore, StoreError, open_store
from fastgw.keys.token import hint, key_hash
from fastgw.ratelimit.policy import Policy, parse_policy

if TYPE_CHECKING:
    from fastgw.config import Config

log = logging.getLogger("fastgw.keys")

_CACHE_MAX = 10_000  # entries; random keys sprayed at the gateway must not grow it without bound


class Principal:
    """An authenticated gateway key, as the stages after Auth see it."""

    __slots__ = ("_budget", "_team_budget", "credentials", "key_id", "models", "name", "policies", "team")

    def __init__(self, record: KeyRecord, config: Config) -> None:
        self.key_id = record.key_id
        self.name = record.name
        self.team = record.team  # None: the key belongs to no team
        # None: every model is allowed.
        self.models = ModelMatcher(record.models) if record.models else None
        self.policies: tuple[Policy, ...] = tuple(parse_policy(p) for p in record.ratelimit)
        # {provider name: API key} from the config credentials the key was granted (first one wins).
        self.credentials: dict[str, str] = {}
        for name in record.credentials:
            cred = config.credentials.get(name)
            if cred is None:
                log.warning("gateway key %s names credential %r, which config does not define", record.key_id, name)
                continue
            self.credentials.setdefault(cred.provider, cred.api_key)
        self._budget = record.budget
        team_cfg = config.keys.teams.get(record.team) if record.team else None
        self._team_budget = Budget(team_cfg.day, team_cfg.month, team_cfg.total) if team_cfg else None

    @property
    def metered(self) -> bool:
        """Whether this key's requests are priced and charged (only when a budget applies)."""
        return bool(self._budget.caps() or (self._team_budget and self._team_budget.caps()))

    def caps(self, now: float) -> list[Cap]:
        return caps_for(self.key_id, self.name, self._budget, self.team, self._team_budget, now)

    def __repr__(self) -> str:
        return f"Principal({self.key_id}, name={self.name!r}, team={self.team!r})"


class KeyBook:
    """Turns the key text a request carries into its Principal: per-worker cache, then the store."""

    def __init__(self, config: Config, store: KeyStore | None = None) -> None:
        self.config = config
        self.ttl = float(config.keys.cache_ttl)
        self.timeout = float(config.keys.redis_timeout)
        self._store = store
        # {key hash: (monotonic expiry, the Principal, or why an unknown/revoked key is refused)}
        self._cache: dict[str, tuple[float, Principal | str]] = {}

    @property
    def store(self) -> KeyStore:
        """Opened on the first keyed request: a gateway that never sees a key never touches it."""
        if self._store is None:
            self._store = open_store(self.config.keys.backend, self.timeout)
        return self._store

    def __repr__(self) -> str:
        return f"KeyBook({self._store!r}, cached={len(self._cache)}, ttl={self.ttl}s)"

    async def principal(self, key: str) -> Principal:
        digest = key_hash(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is None or hit[0] <= now:
            hit = (now + self.ttl, await self._resolve(key, digest))
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = hit
        found = hit[1]
        if isinstance(found, str):
            raise Unauthorized(found)  # a new exception each time: a re-raised one would grow its traceback
        return found

    async def _resolve(self, key: str, digest: str) -> Principal | str:
        try:
            async with asyncio.timeout(self.timeout):
                record = await self.store.get(digest)
        except (StoreError, TimeoutError) as exc:
            log.warning("gateway key lookup failed: %s", exc or "timeout")
            raise KeyStoreUnavailable("the gateway key store is unavailable; try again shortly") from None
        if record is None:
            return f"invalid gateway key {hint(key)}"
        if record.revoked_at is not None:
            return f"gateway key {record.key_id} ({hint(key)}) has been revoked"
        return Principal(record, self.config)

    async def spent(self, caps: list[Cap]) -> list[int]:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.store.read([c.cell for c in caps])
        except (StoreError, TimeoutError) as exc:
            log.warning("gateway key spend read failed: %s", exc or "timeout")
            raise KeyStoreUnavailable("the gateway key store is unavailable; try again shortly") from None

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
