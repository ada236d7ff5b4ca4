"""The memory and Redis caches against the same expectations, Redis being a real redis-server."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from fastgw.cache import (
    LOOKUP_SHA,
    CacheDirective,
    CachedResponse,
    CacheUnavailable,
    MemoryCache,
    RedisCache,
    make_cache,
    redis_key,
)
from fastgw.config import CacheConfig
from tests.redis_server import RedisServer

MAX_ENTRY = 64 * 1024
Cache = MemoryCache | RedisCache
Opener = Callable[[], Awaitable[Cache]]


def d(read: bool = True, save: bool = True, n: int = 1, ttl: int = 600) -> CacheDirective:
    return CacheDirective(read=read, save=save, ttl_s=ttl, bucket_max=n, seed=None, ignore_keys=())


def resp(tag: str | int, status: int = 200, size: int = 0) -> CachedResponse:
    body = f'{{"answer":"{tag}"}}'.encode() + b" " * size
    return CachedResponse(status, b"content-type: application/json\r\n", body, None, latency_ms=123, created_at_ms=1_700_000_000_000)


def stream_resp() -> CachedResponse:
    events = [b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n', b"data: [DONE]\n\n"]
    return CachedResponse(200, b"content-type: text/event-stream\r\n", None, events, latency_ms=456, created_at_ms=1)


@pytest.fixture(params=["memory", "redis"])
def opener(request: pytest.FixtureRequest) -> Opener:
    """Makes the cache inside the test's event loop (a Redis client is bound to the loop it's used in)."""
    if request.param == "memory":
        async def open_memory() -> Cache:
            return MemoryCache(max_bytes=1024 * 1024, max_entry_bytes=MAX_ENTRY)
        return open_memory
    server: RedisServer = request.getfixturevalue("redis_server")

    async def open_redis() -> Cache:
        return RedisCache(Redis.from_url(server.url), timeout_s=0.5, max_entry_bytes=MAX_ENTRY, owns_client=True)
    return open_redis


def run(opener: Opener, body: Callable[[Any], Awaitable[None]]) -> None:
    async def main() -> None:
        cache = await opener()
        try:
            await body(cache)
        finally:
            await cache.aclose()
    asyncio.run(main())


def key() -> bytes:
    return os.urandom(16)


def test_miss_store_hit(opener: Opener) -> None:
    async def body(cache: Cache) -> None:
        k = key()
        first = await cache.lookup(k, d())
        assert (first.hit, first.entry, first.index, first.next_slot) == (False, None, None, 0)
        assert await cache.store(k, 0, resp("a"), 600)
        hit = await cache.lookup(k, d())
        assert (hit.hit, hit.index, hit.next_slot) == (True, 0, None)
        assert hit.entry == resp("a")
        assert hit.entry.latency_ms == 123
        other = await cache.lookup(key(), d())
        assert not other.hit
        assert (cache.hits, cache.misses, cache.stores) == (1, 2, 1)
    run(opener, body)


def test_stream_entries_round_trip(opener: Opener) -> None:
    async def body(cache: Cache) -> None:
        k = key()
        assert await cache.store(k, 0, stream_resp(), 600)
        hit = await cache.lookup(k, d(read=True, save=False))
        assert hit.entry == stream_resp()
    run(opener, body)


def test_bucket_fills_slot_by_slot_then_serves_every_slot(opener: Opener) -> None:
    async def body(cache: Cache) -> None:
        k = key()
        n = 4
        for i in range(n):
            miss = await cache.lookup(k, d(n=n))
            assert (miss.hit, miss.next_slot) == (False, i)
            assert await cache.store(k, miss.next_slot, resp(i), 600)
        served: Counter[int] = Counter()
        for _ in range(200):
            hit = await cache.lookup(k, d(n=n))
            assert hit.hit and hit.next_slot is None and hit.index is not None
            assert hit.entry == resp(hit.index)
            served[hit.index] += 1
        assert set(served) == set(range(n))
        assert min(served.values()) > 10  # 200 draws over 4: a slot this rare means it isn't random
        # A request with a smaller bucket finds its slots full too; a larger one sees a free slot.
        small = await cache.lookup(k, d(n=2))
        assert small.hit and small.index in (0, 1)
        big = await cache.lookup(k, d(n=6))
        assert (big.hit, big.next_slot) == (False, 4)
    run(opener, body)


def test_read_only(opener: Opener) -> None:
    async def body(cache: Cache) -> None:
        k = key()
        miss = await cache.lookup(k, d(save=False, n=3))
        assert (miss.hit, miss.next_slot) == (False, None)
        assert await cache.store(k, 1, resp("one"), 600)
        # Read-only serves whatever is there, even before the bucket is full.
        for _ in range(5):
            hit = await cache.lookup(k, d(save=False, n=3))
            assert (hit.index, hit.entry) == (1, resp("one"))
        # Read and save still wants the bucket filled first.
        fill = await cache.lookup(k, d(n=3))
        assert (fill.hit, fill.next_slot) == (False, 0)
    run(opener, body)


def test_save_only_never_serves_and_replaces_the_slot_nearest_expiry(opener: Opener) -> None:
    async def body(cache: Cache) -> None:
        k = key()
        assert (await cache.lookup(k, d(read=False, n=2))).next_slot == 0
        assert await cache.store(k, 0, resp("long"), 600)
        second = await cache.lookup(k, d(read=False, n=2))
        assert (second.hit, second.next_slot) == (False, 1)
        assert await cache.store(k, 1, resp("short"), 300)
        full = await cache.lookup(k, d(read=False, n=2))
        assert (full.hit, full.entry, full.next_slot) == (False, None, 1)
        single = await cache.lookup(k, d(read=False, n=1))
        assert (single.hit, single.next_slot) == (False, 0)
        assert cache.hits == 0
    run(opener, body)


def test_what_is_not_stored(opener: Opener) -> None:
    async def body(cache: Cache) -> None:
        k = key()
        assert not await cache.store(k, 0, resp("err", status=500), 600)
        assert not await cache.store(k, 0, resp("redirect", status=304), 600)
        assert not await cache.store(k, 0, resp("big", size=MAX_ENTRY), 600)
        assert not await cache.store(k, 0, resp("never"), 0)
        assert not await cache.store(k, 20, resp("slot"), 600)
        assert not (await cache.lookup(k, d(save=False, n=20))).hit
        assert cache.stores == 0
        just = resp("x")
        just.body = just.body + b" " * (MAX_ENTRY - just.size)  # type: ignore[operator]
        assert just.size == MAX_ENTRY and await cache.store(k, 0, just, 600)
        assert (await cache.lookup(k, d())).entry == just
    run(opener, body)


def test_ttl_expiry(opener: Opener) -> None:
    async def body(cache: Cache) -> None:
        k = key()
        assert await cache.store(k, 0, resp("brief"), 1)
        assert await cache.store(k, 1, resp("lasting"), 600)
        assert (await cache.lookup(k, d(n=2))).index in (0, 1)
        await asyncio.sleep(1.2)
        refill = await cache.lookup(k, d(n=2))
        assert (refill.hit, refill.next_slot) == (False, 0)
        left = await cache.lookup(k, d(save=False, n=2))
        assert (left.index, left.entry) == (1, resp("lasting"))
        if isinstance(cache, RedisCache):  # the expired slot's fields are gone, not just skipped
            assert await cache.client.hkeys(redis_key(k)) in ([b"d1", b"e1"], [b"e1", b"d1"])
    run(opener, body)


# -- memory only ---------------------------------------------------------------------------------

def test_memory_byte_bound_evicts_least_recently_used() -> None:
    async def body() -> None:
        one = MemoryCache(max_bytes=10**6, max_entry_bytes=10**5)
        await one.store(b"k" * 16, 0, resp(0, size=900), 60)
        per_slot = one.bytes
        cache = MemoryCache(max_bytes=3 * per_slot, max_entry_bytes=per_slot)
        keys = [bytes([i]) * 16 for i in range(4)]
        for i in range(3):
            assert await cache.store(keys[i], 0, resp(i, size=900), 60)
        assert (cache.bytes, cache.evictions) == (3 * per_slot, 0)
        assert (await cache.lookup(keys[0], d())).hit  # keys[0] is now the most recent
        assert await cache.store(keys[3], 0, resp(3, size=900), 60)
        assert cache.evictions == 1 and cache.bytes == 3 * per_slot and len(cache) == 3
        assert not (await cache.lookup(keys[1], d())).hit
        for i in (0, 2, 3):
            assert (await cache.lookup(keys[i], d())).entry == resp(i, size=900)
        # Replacing a slot re-counts it instead of adding to it.
        assert await cache.store(keys[3], 0, resp(3, size=900), 60)
        assert cache.bytes == 3 * per_slot and cache.evictions == 1
    asyncio.run(body())


def test_memory_new_entry_survives_a_tight_bound() -> None:
    cache = MemoryCache(max_bytes=2000, max_entry_bytes=2000)
    assert cache.store_now(b"a" * 16, 0, resp("a", size=1500), 60)
    assert cache.store_now(b"b" * 16, 0, resp("b", size=1600), 60)
    assert len(cache) == 1 and cache.lookup_now(b"b" * 16, d()).hit


def test_memory_config_is_checked() -> None:
    with pytest.raises(ValueError):
        MemoryCache(max_bytes=10, max_entry_bytes=100)


# -- redis only ----------------------------------------------------------------------------------

def redis_run(server: RedisServer, body: Callable[[RedisCache], Awaitable[None]], timeout_s: float = 0.5) -> None:
    async def main() -> None:
        cache = RedisCache(Redis.from_url(server.url), timeout_s=timeout_s, max_entry_bytes=MAX_ENTRY, owns_client=True)
        try:
            await body(cache)
        finally:
            await cache.aclose()
    asyncio.run(main())


def test_redis_layout(redis_server: RedisServer) -> None:
    async def body(cache: RedisCache) -> None:
        k = bytes(range(16))
        assert await cache.store(k, 2, resp("x"), 100)
        name = b"fastgw:c:000102030405060708090a0b0c0d0e0f"
        assert redis_key(k) == name
        fields = await cache.client.hgetall(name)
        assert set(fields) == {b"d2", b"e2"}
        now_ms = int(time.time() * 1000)
        assert now_ms + 95_000 < int(fields[b"e2"]) <= now_ms + 101_000
        assert 95_000 < await cache.client.pttl(name) <= 100_000
        # A longer-lived slot lengthens the hash's own expiry; a shorter one leaves it.
        assert await cache.store(k, 0, resp("y"), 200)
        assert await cache.store(k, 1, resp("z"), 10)
        assert 195_000 < await cache.client.pttl(name) <= 200_000
    redis_run(redis_server, body)


def test_redis_foreign_value_is_a_miss_that_gets_overwritten(redis_server: RedisServer) -> None:
    async def body(cache: RedisCache) -> None:
        k = key()
        far = str(int(time.time() * 1000) + 60_000)
        await cache.client.hset(redis_key(k), mapping={"d0": b"not an entry", "e0": far})
        miss = await cache.lookup(k, d())
        assert (miss.hit, miss.next_slot) == (False, 0)
        assert (await cache.lookup(k, d(save=False))).next_slot is None
        assert await cache.store(k, 0, resp("fixed"), 60)
        assert (await cache.lookup(k, d())).entry == resp("fixed")
    redis_run(redis_server, body)


def test_redis_lookup_pipelines_with_other_commands(redis_server: RedisServer) -> None:
    async def body(cache: RedisCache) -> None:
        k = key()
        assert await cache.store(k, 0, resp("p"), 60)
        await cache.load_scripts()
        keys, args = cache.lookup_args(k, d())
        pipe = cache.client.pipeline(transaction=False)
        pipe.incr("some-rate-counter")
        pipe.evalsha(LOOKUP_SHA, len(keys), *keys, *args)
        counter, reply = await pipe.execute(raise_on_error=False)
        assert counter == 1
        got = await cache.lookup_from_reply(reply, k, d())
        assert (got.index, got.entry) == (0, resp("p"))
        # Scripts forgotten (as after a restart): the pipelined reply is NOSCRIPT, and the cache
        # redoes the lookup itself rather than report a failure.
        await cache.client.script_flush()
        pipe = cache.client.pipeline(transaction=False)
        pipe.evalsha(LOOKUP_SHA, len(keys), *keys, *args)
        (reply,) = await pipe.execute(raise_on_error=False)
        assert isinstance(reply, Exception)
        got = await cache.lookup_from_reply(reply, k, d())
        assert got.entry == resp("p") and cache.bypasses == 0
    redis_run(redis_server, body)


def test_redis_error_reply_is_unavailable(redis_server: RedisServer) -> None:
    async def body(cache: RedisCache) -> None:
        k = key()
        await cache.client.set(redis_key(k), b"a string, not a hash")
        with pytest.raises(CacheUnavailable):
            await cache.lookup(k, d())
        assert cache.bypasses == 1
    redis_run(redis_server, body)


def test_redis_killed_then_restarted(redis_server: RedisServer) -> None:
    async def body(cache: RedisCache) -> None:
        k = key()
        assert await cache.store(k, 0, resp("before"), 60)
        assert (await cache.lookup(k, d())).hit
        redis_server.kill()
        for op in (cache.lookup(k, d()), cache.store(k, 0, resp("during"), 60)):
            started = time.monotonic()
            with pytest.raises(CacheUnavailable):
                await op
            assert time.monotonic() - started < 1.0
        assert cache.bypasses == 2
        redis_server.start()  # empty again, and without the scripts
        miss = await cache.lookup(k, d())
        assert (miss.hit, miss.next_slot) == (False, 0)
        assert await cache.store(k, 0, resp("after"), 60)
        assert (await cache.lookup(k, d())).entry == resp("after")
        assert cache.bypasses == 2
    redis_run(redis_server, body)


def test_redis_slow_counts_as_unavailable(redis_server: RedisServer) -> None:
    async def body(cache: RedisCache) -> None:
        k = key()
        assert not (await cache.lookup(k, d())).hit
        assert redis_server.command("CLIENT", "PAUSE", "2000", "ALL").startswith(b"+OK")
        try:
            started = time.monotonic()
            with pytest.raises(CacheUnavailable):
                await cache.lookup(k, d())
            assert time.monotonic() - started < 1.0
        finally:
            redis_server.command("CLIENT", "UNPAUSE")
        assert cache.bypasses == 1
        assert not (await cache.lookup(k, d())).hit
    redis_run(redis_server, body, timeout_s=0.3)


def test_redis_client_must_return_bytes(redis_server: RedisServer) -> None:
    async def body() -> None:
        client = Redis.from_url(redis_server.url, decode_responses=True)
        with pytest.raises(ValueError):
            RedisCache(client, 0.5)
        await client.aclose()
    asyncio.run(body())


def test_make_cache(redis_server: RedisServer) -> None:
    async def body() -> None:
        config = CacheConfig()
        memory = make_cache("memory", config)
        assert isinstance(memory, MemoryCache) and memory.max_entry_bytes == config.max_entry_bytes
        owned = make_cache(redis_server.url, config)
        assert isinstance(owned, RedisCache) and owned.timeout_s == 0.25
        assert not (await owned.lookup(key(), d())).hit
        await owned.aclose()
        client = Redis.from_url(redis_server.url)
        shared = make_cache(redis_server.url, config, client)
        assert not (await shared.lookup(key(), d())).hit
        await shared.aclose()
        assert await client.ping()  # still open: it belongs to whoever passed it
        await client.aclose()
        with pytest.raises(ValueError):
            make_cache("memcached://x", config)
    asyncio.run(body())
