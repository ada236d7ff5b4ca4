"""Semantics both limiters share: the same tests run against memory and against a real Redis."""

from __future__ import annotations

import pytest

from fastgw.ratelimit import (
    MemoryLimiter,
    Policy,
    RedisLimiter,
    check_op,
    parse_policy,
    segment_key,
    spend_op,
)
from tests.ratelimit.harness import Harness
from tests.redis_server import RedisServer


@pytest.fixture(params=["memory", "redis"])
def h(request: pytest.FixtureRequest) -> Harness:
    if request.param == "memory":
        return Harness("memory")
    server: RedisServer = request.getfixturevalue("redis_server")
    return Harness("redis", server.url)


TEN = parse_policy("10;w=60")


def test_burst_of_quota_then_refused(h: Harness) -> None:
    async def body(h: Harness) -> None:
        ds = [await h.limiter.check("k", TEN) for _ in range(12)]
        assert [d.allowed for d in ds] == [True] * 10 + [False] * 2
        assert [d.remaining for d in ds] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0]
        assert all(type(d.remaining) is int for d in ds)  # prints as "9", not "9.0"
        assert all(d.limit == 10 and d.policy is TEN for d in ds)
        assert ds[2].reset_s == pytest.approx(18, abs=h.tol)  # 3 used, 6 s each to refill
        assert ds[2].retry_after_s == 0
        refused = ds[10]
        assert refused.retry_after_s == pytest.approx(6, abs=h.tol)  # one request's worth of refill
        assert refused.reset_s == pytest.approx(60, abs=h.tol)

    h.run(body)


def test_refill_is_continuous(h: Harness) -> None:
    async def body(h: Harness) -> None:
        for _ in range(10):
            assert (await h.limiter.check("k", TEN)).allowed
        h.advance(5)
        d = await h.limiter.check("k", TEN)
        assert not d.allowed and d.retry_after_s == pytest.approx(1, abs=h.tol)
        h.advance(1)
        assert (await h.limiter.check("k", TEN)).allowed
        assert not (await h.limiter.check("k", TEN)).allowed
        h.advance(30)  # five more
        assert [(await h.limiter.check("k", TEN)).allowed for _ in range(6)] == [True] * 5 + [False]
        h.advance(61)  # full again: a whole burst
        d = await h.limiter.check("k", TEN)
        assert d.remaining == 9 and d.reset_s == pytest.approx(6, abs=h.tol)

    h.run(body)


def test_decimal_quota(h: Harness) -> None:
    async def body(h: Harness) -> None:
        p = parse_policy("2.5;w=60")  # one request per 24 s, bursts of 2.5
        ds = [await h.limiter.check("k", p) for _ in range(3)]
        assert [d.allowed for d in ds] == [True, True, False]
        assert [d.remaining for d in ds] == [1, 0, 0]
        assert ds[2].limit == 2.5
        assert ds[2].retry_after_s == pytest.approx(12, abs=h.tol)  # 2 of 2.5 used: half a request to go
        h.advance(12)
        assert (await h.limiter.check("k", p)).allowed
        assert not (await h.limiter.check("k", p)).allowed

    h.run(body)


def test_quota_not_exactly_divisible_is_not_cut_short_by_rounding(h: Harness) -> None:
    async def body(h: Harness) -> None:
        for text, n in (("7;w=60", 7), ("3;w=61", 3), ("0.1;w=60", 0), ("1;w=31536000", 1), ("1000;w=3600", 1000)):
            p = parse_policy(text)
            allowed = [(await h.limiter.check(text, p)).allowed for _ in range(n + 1)]
            assert allowed == [True] * n + [False], text

    h.run(body)


def test_cents(h: Harness) -> None:
    async def body(h: Harness) -> None:
        p = parse_policy("10;w=60;u=cents")  # 10 cents a minute: 6 s per cent
        d = await h.limiter.check("k", p)
        assert d.allowed and d.remaining == 10 and d.reset_s == 0  # a check takes nothing
        assert (await h.limiter.check("k", p)).remaining == 10
        await h.limiter.spend("k", p, 4)
        d = await h.limiter.check("k", p)
        assert d.allowed and d.remaining == pytest.approx(6, abs=h.tol) and d.reset_s == pytest.approx(24, abs=h.tol)
        await h.limiter.spend("k", p, 9.5)  # more than is left: the balance goes to -3.5
        d = await h.limiter.check("k", p)
        assert not d.allowed and d.remaining == 0
        assert d.reset_s == pytest.approx(13.5 * 6, abs=h.tol)
        assert d.retry_after_s == pytest.approx(3.5 * 6, abs=h.tol)  # until the balance is above 0
        h.advance(3.5 * 6 - 1)
        assert not (await h.limiter.check("k", p)).allowed
        h.advance(2)
        d = await h.limiter.check("k", p)
        assert d.allowed and d.remaining == pytest.approx(1 / 6, abs=h.tol)
        await h.limiter.spend("k", p, 0)  # free: changes nothing
        assert (await h.limiter.check("k", p)).remaining == pytest.approx(1 / 6, abs=h.tol)

    h.run(body)


def test_spent_to_exactly_zero_is_refused(h: Harness) -> None:
    async def body(h: Harness) -> None:
        # In one call, so no real time passes between the spends and the check against Redis
        # (the refused check means nothing is applied; the decisions still say what happened).
        p = parse_policy("0.3;w=60;u=cents")
        ds = await h.limiter.apply([spend_op("k", p, 0.1)] * 3 + [check_op("k", p)])
        assert [d.allowed for d in ds] == [True, True, True, False]  # 0.1 * 3 is not exactly 0.3 in binary
        assert ds[3].remaining == 0
        assert (await h.limiter.check("k", p)).remaining == pytest.approx(0.3)

    h.run(body)


def test_spend_rejects_negative_amounts(h: Harness) -> None:
    async def body(h: Harness) -> None:
        p = parse_policy("10;w=60;u=cents")
        for bad in (-1, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="amount to spend"):
                await h.limiter.spend("k", p, bad)

    h.run(body)


def test_check_many_is_all_or_nothing(h: Harness) -> None:
    async def body(h: Harness) -> None:
        one, five = parse_policy("1;w=60"), parse_policy("5;w=60")
        items = [("a", one), ("b", five)]
        ds = await h.limiter.check_many(items)
        assert [d.allowed for d in ds] == [True, True]
        assert [d.remaining for d in ds] == [0, 4]
        ds = await h.limiter.check_many(items)  # "a" refuses: "b" must not be charged
        assert [d.allowed for d in ds] == [False, True]
        assert ds[1].remaining == 4 and ds[1].reset_s == pytest.approx(12, abs=h.tol)
        assert ds[0].retry_after_s == pytest.approx(60, abs=h.tol)
        assert (await h.limiter.check("b", five)).remaining == 3
        assert await h.limiter.check_many([]) == []

    h.run(body)


def test_check_many_with_cents_and_requests(h: Harness) -> None:
    async def body(h: Harness) -> None:
        cents, reqs = parse_policy("5;w=60;u=cents"), parse_policy("3;w=60")
        await h.limiter.spend("c", cents, 5.5)
        for _ in range(2):
            ds = await h.limiter.check_many([("r", reqs), ("c", cents)])
            assert [d.allowed for d in ds] == [True, False]
        assert (await h.limiter.check("r", reqs)).remaining == 2  # the refusals took nothing

    h.run(body)


def test_one_key_twice_in_a_call_counts_twice(h: Harness) -> None:
    async def body(h: Harness) -> None:
        one = parse_policy("1;w=60")
        ds = await h.limiter.check_many([("a", one), ("a", one)])
        assert [d.allowed for d in ds] == [True, False]
        assert (await h.limiter.check("a", one)).allowed  # and the refused call took nothing
        two = parse_policy("2;w=60")
        ds = await h.limiter.check_many([("b", two), ("b", two)])
        assert [d.allowed for d in ds] == [True, True]
        assert [d.remaining for d in ds] == [1, 0]  # each as it stood after its own request

    h.run(body)


def test_buckets_are_separate(h: Harness) -> None:
    async def body(h: Harness) -> None:
        per_user = parse_policy("2;w=60;s=user")
        other_policy = parse_policy("3;w=60;s=user")
        alice = segment_key(per_user, "alice", {})
        for _ in range(2):
            assert (await h.limiter.check(alice, per_user)).allowed
        assert not (await h.limiter.check(alice, per_user)).allowed
        assert (await h.limiter.check(segment_key(per_user, "bob", {}), per_user)).allowed
        assert (await h.limiter.check(segment_key(other_policy, "alice", {}), other_policy)).remaining == 2
        scoped = segment_key(per_user, "alice", {}, scope="model:gpt-4o")
        assert (await h.limiter.check(scoped, per_user)).allowed

    h.run(body)


def test_now_is_for_the_memory_limiter_only(h: Harness) -> None:
    async def body(h: Harness) -> None:
        if isinstance(h.limiter, MemoryLimiter):
            assert (await h.limiter.check("k", Policy(1, 60), now=5.0)).allowed
            assert not (await h.limiter.check("k", Policy(1, 60), now=64.0)).allowed
            assert (await h.limiter.check("k", Policy(1, 60), now=65.0)).allowed
        else:
            assert isinstance(h.limiter, RedisLimiter)
            with pytest.raises(ValueError, match="server's clock"):
                await h.limiter.check("k", Policy(1, 60), now=5.0)

    h.run(body)
