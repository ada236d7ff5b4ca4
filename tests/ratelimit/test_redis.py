"""What only the Redis limiter has: shared buckets across clients and processes, key expiry, the
script's layout for embedding, and what happens when Redis dies or stalls."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio

from fastgw.ratelimit import (
    LUA_FUNCTION,
    LimiterUnavailable,
    RedisLimiter,
    check_op,
    decisions_from_reply,
    parse_policy,
    script_args,
    spend_op,
)
from tests.redis_server import RedisServer

TEN = parse_policy("10;w=60")


def run(url: str, body: Callable[[redis.asyncio.Redis], Awaitable[None]], **client_kwargs: object) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis.from_url(url, **client_kwargs)  # type: ignore[arg-type]
        try:
            await body(client)
        finally:
            await client.aclose()

    asyncio.run(main())


def test_keys_are_prefixed_and_expire_when_full(redis_server: RedisServer) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        lim = RedisLimiter(client, timeout=5)
        for _ in range(3):
            await lim.check("k", TEN)
        assert await client.keys("*") == [b"fastgw:rl:k"]
        assert 17_000 < await client.pttl("fastgw:rl:k") <= 18_000  # full again in 18 s
        cents = parse_policy("10;w=60;u=cents")
        await lim.check("c", cents)
        assert not await client.exists("fastgw:rl:c")  # a check that takes nothing writes nothing
        await lim.spend("c", cents, 0)
        assert not await client.exists("fastgw:rl:c")
        await lim.spend("c", cents, 1)
        assert 5_000 < await client.pttl("fastgw:rl:c") <= 6_000
        other = RedisLimiter(client, timeout=5, prefix="other:")
        assert (await other.check("k", TEN)).remaining == 9

    run(redis_server.url, body)


def test_a_refused_call_writes_nothing(redis_server: RedisServer) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        lim = RedisLimiter(client, timeout=5)
        await lim.spend("c", parse_policy("1;w=60;u=cents"), 2)
        ds = await lim.check_many([("r", TEN), ("c", parse_policy("1;w=60;u=cents"))])
        assert [d.allowed for d in ds] == [True, False]
        assert not await client.exists("fastgw:rl:r")

    run(redis_server.url, body)


def test_script_is_reloaded_after_script_flush(redis_server: RedisServer) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        lim = RedisLimiter(client, timeout=5)
        assert (await lim.check("k", TEN)).remaining == 9
        await client.script_flush()
        assert (await lim.check("k", TEN)).remaining == 8

    run(redis_server.url, body)


def test_works_with_a_client_that_decodes_responses(redis_server: RedisServer) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        lim = RedisLimiter(client, timeout=5)
        assert [(await lim.check("k", parse_policy("1.5;w=60"))).allowed for _ in range(2)] == [True, False]

    run(redis_server.url, body, decode_responses=True)


def test_function_embeds_in_another_script(redis_server: RedisServer) -> None:
    """The cache stage's use: its own key and argument first, the rate limit's after them."""
    host = (
        "if redis.replicate_commands then redis.replicate_commands() end\n"
        + LUA_FUNCTION
        + "local cached = redis.call('GET', KEYS[1])\n"
        + "local rl = fastgw_ratelimit(KEYS, ARGV, 2, 2)\n"
        + "return {cached or false, rl, ARGV[1]}\n"
    )

    async def body(client: redis.asyncio.Redis) -> None:
        await client.set("cache:x", "hit")
        cents = parse_policy("10;w=60;u=cents")
        ops = [check_op("a", TEN), check_op("b", cents), spend_op("b", cents, 2)]
        keys, args = script_args(ops)
        cached, rl, mine = await client.eval(host, 1 + len(keys), "cache:x", *keys, "host-arg", *args)
        assert (cached, mine) == (b"hit", b"host-arg")
        ds = decisions_from_reply(rl, ops)
        assert [d.allowed for d in ds] == [True, True, True]
        assert ds[0].remaining == 9 and ds[2].remaining == pytest.approx(8, abs=0.01)
        assert await client.exists("fastgw:rl:a", "fastgw:rl:b") == 2

    run(redis_server.url, body)


def test_script_args_layout() -> None:
    ops = [check_op("a", parse_policy("2.5;w=60")), spend_op("b", parse_policy("10;w=3600;u=cents"), 0.25)]
    keys, args = script_args(ops, prefix="p:", time_offset_s=1.5)
    assert keys == ["p:a", "p:b"]
    assert args == ["1.5", "2", "2.5", "60", "1.0", "c", "10", "3600", "0.25", "s"]


def test_fifty_concurrent_checks_from_several_clients_allow_exactly_ten(redis_server: RedisServer) -> None:
    async def main() -> None:
        clients = [redis.asyncio.Redis.from_url(redis_server.url) for _ in range(5)]
        try:
            limiters = [RedisLimiter(c, timeout=5) for c in clients]
            ds = await asyncio.gather(*(limiters[i % 5].check("k", TEN) for i in range(50)))
            assert sum(d.allowed for d in ds) == 10
            assert sorted(d.remaining for d in ds if d.allowed) == list(range(10))
        finally:
            for c in clients:
                await c.aclose()

    asyncio.run(main())


_WORKER = """
import asyncio, sys
import redis.asyncio
from fastgw.ratelimit import RedisLimiter, parse_policy

async def main(url, n):
    clients = [redis.asyncio.Redis.from_url(url) for _ in range(3)]
    limiters = [RedisLimiter(c, timeout=5) for c in clients]
    for c in clients:
        await c.ping()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    policy = parse_policy("10;w=60")
    ds = await asyncio.gather(*(limiters[i % 3].check("k", policy) for i in range(n)))
    print(sum(d.allowed for d in ds), flush=True)
    for c in clients:
        await c.aclose()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_fifty_concurrent_checks_from_two_processes_allow_exactly_ten(redis_server: RedisServer) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, redis_server.url, "25"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for p in procs:  # both connected before either fires
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        allowed = []
        for p in procs:
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0, err
            allowed.append(int(out.strip()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert sum(allowed) == 10


def test_redis_killed_raises_unavailable_quickly_then_recovers(redis_server: RedisServer) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        lim = RedisLimiter(client, timeout=0.3)
        assert (await lim.check("k", TEN)).allowed
        redis_server.kill()
        for attempt in range(2):  # the pooled connection is dead the first time, refused the next
            t0 = time.monotonic()
            with pytest.raises(LimiterUnavailable):
                await lim.check("k", TEN)
            assert time.monotonic() - t0 < 0.3 + 0.2
            assert lim.failures == attempt + 1
        redis_server.start()  # empty, and without the script: EVALSHA falls back to loading it
        d = await lim.check("k", TEN)
        assert d.allowed and d.remaining == 9
        assert lim.failures == 2

    run(redis_server.url, body, socket_connect_timeout=1, socket_timeout=1)


def test_redis_stalled_raises_unavailable_within_the_timeout(redis_server: RedisServer) -> None:
    assert redis_server.proc is not None
    pid = redis_server.proc.pid

    async def body(client: redis.asyncio.Redis) -> None:
        lim = RedisLimiter(client, timeout=0.3)
        assert (await lim.check("k", TEN)).allowed
        os.kill(pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with pytest.raises(LimiterUnavailable):
                await lim.check("other", TEN)
            assert 0.25 < time.monotonic() - t0 < 0.3 + 0.2
        finally:
            os.kill(pid, signal.SIGCONT)
        assert lim.failures == 1
        assert (await lim.check("k", TEN)).remaining == 8  # the same client carries on

    run(redis_server.url, body)


def test_bad_timeout_is_refused(redis_server: RedisServer) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        with pytest.raises(ValueError, match="timeout"):
            RedisLimiter(client, timeout=0)

    run(redis_server.url, body)
