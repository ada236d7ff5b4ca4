"""What only the memory limiter has: its clock, and a bounded table."""

from __future__ import annotations

import asyncio
import time

import pytest

from fastgw.ratelimit import MemoryLimiter, parse_policy

TEN = parse_policy("10;w=60")


def test_default_clock_is_monotonic() -> None:
    async def body() -> None:
        lim = MemoryLimiter()
        assert lim.clock is time.monotonic
        assert (await lim.check("k", TEN)).reset_s == pytest.approx(6)

    asyncio.run(body())


def test_full_buckets_are_swept_when_the_table_is_full() -> None:
    async def body() -> None:
        lim = MemoryLimiter(max_keys=10, clock=lambda: 0.0)
        for i in range(10):
            await lim.check(f"k{i}", TEN, now=float(i))  # each full again 6 s after its use
        assert len(lim) == 10
        await lim.check("new", TEN, now=10.0)  # k0..k4 are full again by now: dropped
        assert len(lim) == 6 and lim.evicted == 0
        for i in range(5, 10):  # the survivors still remember their use
            assert (await lim.check(f"k{i}", TEN, now=10.0)).remaining == 8

    asyncio.run(body())


def test_when_every_bucket_is_in_use_the_nearest_to_full_go_first() -> None:
    async def body() -> None:
        lim = MemoryLimiter(max_keys=10)
        for i in range(10):
            for _ in range(i + 1):  # k9 is the most used, k0 the least
                await lim.check(f"k{i}", TEN, now=0.0)
        await lim.check("new", TEN, now=0.0)
        assert len(lim) == 10 and lim.evicted == 1
        assert (await lim.check("k0", TEN, now=0.0)).remaining == 9  # forgotten: a fresh bucket
        assert (await lim.check("k9", TEN, now=0.0)).allowed is False  # remembered

    asyncio.run(body())


def test_checks_that_take_nothing_store_nothing() -> None:
    async def body() -> None:
        lim = MemoryLimiter()
        cents = parse_policy("10;w=60;u=cents")
        for i in range(100):
            await lim.check(f"k{i}", cents, now=0.0)
        assert len(lim) == 0
        await lim.check_many([("a", TEN), ("b", parse_policy("1;w=60;u=cents"))], now=0.0)
        assert len(lim) == 1

    asyncio.run(body())


def test_max_keys_is_checked() -> None:
    with pytest.raises(ValueError):
        MemoryLimiter(max_keys=1)
