"""Gateway key pieces on their own: key text and hashing, model globs, budget periods and refusals,
and both stores (a real SQLite file, a real redis-server) charging from many processes at once."""

from __future__ import annotations

import asyncio
import calendar
import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from fastgw.errors import BudgetExceeded
from fastgw.keys.budget import NANO_PER_USD, caps_for, check, period_cells
from fastgw.keys.record import Budget, KeyRecord, ModelMatcher
from fastgw.keys.store import open_store
from fastgw.keys.token import bearer_key, hint, key_hash, key_id_for, new_key
from tests.redis_server import RedisServer


def test_keys_are_random_prefixed_and_stored_only_as_a_hash() -> None:
    a, b = new_key(), new_key()
    assert a != b and a.startswith("fgw-") and len(a) == 4 + 43
    digest = key_hash(a)
    assert len(digest) == 64 and a[4:] not in digest
    assert key_id_for(digest) == "key_" + digest[:16]
    assert hint(a) == "fgw-..." + a[-4:]


@pytest.mark.parametrize(("value", "found"), [
    (b"Bearer fgw-abc", "fgw-abc"), ("bearer  fgw-abc ", "fgw-abc"), (b"Bearer sk-abc", None),
    (b"fgw-abc", "fgw-abc"), (None, None), (b"Basic fgw-abc", None), ("Bearer fgw-x", "fgw-x"),
])
def test_a_bearer_or_bare_fgw_value_is_a_gateway_key(value: bytes | str | None, found: str | None) -> None:
    assert bearer_key(value) == found


def test_model_matcher_exact_and_globs() -> None:
    m = ModelMatcher(("gpt-4o-mini", "claude-*", "anthropic/*"))
    assert m.allows("gpt-4o-mini") and m.allows("claude-sonnet-4-5") and m.allows("anthropic/claude-opus-4")
    assert not m.allows("gpt-4o") and not m.allows("gpt-4o-mini-2") and not m.allows("openai/gpt-4o-mini")


def test_periods_are_utc_calendar_day_and_month() -> None:
    t = calendar.timegm((2026, 1, 31, 23, 59, 59))
    cells = period_cells("key:k", t)
    assert cells["day"][0] == "key:k|day:2026-01-31" and cells["month"][0] == "key:k|month:2026-01"
    assert period_cells("key:k", t + 1)["day"][0] == "key:k|day:2026-02-01"
    assert period_cells("key:k", t + 1)["month"][0] == "key:k|month:2026-02"
    assert cells["total"] == ("key:k|total", "", 0)


def test_check_names_the_owner_budget_and_period() -> None:
    now = calendar.timegm((2026, 11, 23, 12, 0, 0))
    caps = caps_for("key_1", "ci", Budget(day=1.0, total=5.0), "research", Budget(month=2.0), now)
    assert [c.cell for c in caps] == ["key:key_1|day:2026-11-23", "key:key_1|total", "team:research|month:2026-11"]
    check(caps, [NANO_PER_USD - 1, 0, 0])  # under every cap: passes
    with pytest.raises(BudgetExceeded) as exc:
        check(caps, [NANO_PER_USD, 0, 0])
    assert "gateway key 'ci' (key_1) is over its daily budget of $1.00 for 2026-11-23 UTC" in exc.value.message
    with pytest.raises(BudgetExceeded) as exc:
        check(caps, [0, 0, 3 * NANO_PER_USD])
    assert "team 'research' is over its monthly budget of $2.00 for 2026-11 UTC" in exc.value.message
    assert exc.value.status == 429 and b"x-should-retry: false" in exc.value.headers


def test_record_round_trips_through_json() -> None:
    r = KeyRecord("h" * 64, "key_x", "n", "fgw-...abcd", 1.5, "t", ("a*",), ("3;w=60",), Budget(1.0, None, 3.0), ("c",))
    assert KeyRecord.from_json(r.to_json()) == r


def _charge_many(backend: str, n: int) -> None:
    async def go() -> None:
        store = open_store(backend, 5.0)
        for _ in range(n):
            await store.charge([("key:k|total", 0), ("team:t|day:x", 60)], 7)
        await store.close()

    asyncio.run(go())


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.url
    return f"sqlite://{tmp_path}/keys.db"


def test_charges_from_four_processes_lose_no_increment(backend: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_charge_many, args=(backend, 150)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0

    async def read() -> list[int]:
        store = open_store(backend)
        try:
            return await store.read(["key:k|total", "team:t|day:x", "never:charged"])
        finally:
            await store.close()

    assert asyncio.run(read()) == [4 * 150 * 7, 4 * 150 * 7, 0]


def test_store_put_get_all(backend: str) -> None:
    async def go() -> None:
        store = open_store(backend)
        try:
            r = KeyRecord(key_hash("fgw-a"), "key_a", "a", "fgw-...a", time.time())
            assert await store.get(r.key_hash) is None
            await store.put(r)
            assert await store.get(r.key_hash) == r
            revoked = KeyRecord(**{**{f: getattr(r, f) for f in r.__dataclass_fields__}, "revoked_at": 1.0})
            await store.put(revoked)
            assert await store.get(r.key_hash) == revoked
            assert await store.all() == [revoked]
        finally:
            await store.close()

    asyncio.run(go())


def test_gateway_close_lands_pending_charges_then_closes_the_key_store(tmp_path: Path) -> None:
    """At shutdown the budget charges still on their way are written before the key store closes."""
    from fastgw.app import Gateway
    from fastgw.config import from_dict

    async def run() -> tuple[list[int], bool]:
        gw = Gateway(from_dict({"keys": {"backend": f"sqlite://{tmp_path}/keys.db"}}))
        await gw.start()
        cap = caps_for("key_x", "x", Budget(total=5.0), None, None, time.time())[0]
        store = gw.keys.store
        for _ in range(20):
            gw.charges.spawn(store.charge([(cap.cell, cap.ttl_s)], 1000))
        await gw.close()
        closed = store._writer is None  # type: ignore[attr-defined]
        again = open_store(f"sqlite://{tmp_path}/keys.db")
        try:
            return await again.read([cap.cell]), closed
        finally:
            await again.close()

    spent, closed = asyncio.run(run())
    assert closed
    assert spent == [20 * 1000]


def _open_at_once(path: str, barrier: Any) -> None:
    from fastgw.keys.sqlite_store import _connect

    barrier.wait()
    _connect(path).close()


def test_processes_opening_a_new_sqlite_store_together_all_succeed(tmp_path: Path) -> None:
    """Workers starting together open the same new file: SQLite refuses a journal-mode switch that
    meets another's lock at once (no busy wait), which failed ~1 open in 40 before the retry."""
    ctx = multiprocessing.get_context("fork")
    for round_ in range(25):
        barrier = ctx.Barrier(8)
        path = str(tmp_path / f"keys-{round_}.db")
        procs = [ctx.Process(target=_open_at_once, args=(path, barrier)) for _ in range(8)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        assert [p.exitcode for p in procs] == [0] * 8, f"round {round_}"
