"""MemoryLimiter: the rate limiter for one worker process, with the Redis limiter's interface.

Each worker has its own buckets, so with N workers a client gets up to N times the quota; the
Redis backend is for limits that must hold across workers and hosts.

The methods are coroutines only so the pipeline can await either backend the same way; nothing in
them awaits, so each call runs to completion without another request seeing a half-applied
``check_many``. That is what makes the all-or-nothing promise hold without a lock.

Memory: a bucket is one dict entry (key -> the time it is full again). An entry whose time has
passed is a full bucket, the same as no entry, so dropping it changes no decision. Checks that
take nothing (u=cents before the call) store nothing. When new keys would take the table past
``max_keys``, a sweep drops every full entry; if the table is still over 90% full (that many
buckets really are in use), the ones nearest to full are dropped down to 90%, so the next sweep
is ``max_keys / 10`` new keys away and sweeping stays cheap per request. The dropped buckets
forget the little they had used, which errs towards letting a request through; the alternative,
refusing new keys, would lock out new users instead.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

from fastgw.ratelimit.gcra import Decision, Op, check_op, decide, spend_op, step
from fastgw.ratelimit.policy import Policy


class MemoryLimiter:
    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_keys < 10:
            raise ValueError("max_keys must be at least 10")
        self.max_keys = max_keys
        self.clock = clock  # the time source; tests pass their own, or ``now`` per call
        self._tats: dict[str, float] = {}  # key -> when the bucket is full again (clock time)
        self.evicted = 0  # buckets dropped while not yet full (capacity pressure), for metrics

    def __len__(self) -> int:
        return len(self._tats)

    async def check(self, key: str, policy: Policy, now: float | None = None) -> Decision:
        return self._apply([check_op(key, policy)], now)[0]

    async def check_many(self, items: list[tuple[str, Policy]], now: float | None = None) -> list[Decision]:
        return self._apply([check_op(k, p) for k, p in items], now)

    async def spend(self, key: str, policy: Policy, amount: float, now: float | None = None) -> None:
        self._apply([spend_op(key, policy, amount)], now)

    async def apply(self, ops: list[Op], now: float | None = None) -> list[Decision]:
        """Any mix of operations, all-or-nothing: what the other methods are made of."""
        return self._apply(ops, now)

    def apply_now(self, ops: list[Op], now: float | None = None) -> list[Decision]:
        """``apply`` without the coroutine: nothing here waits, so the stage need not await."""
        return self._apply(ops, now)

    def _apply(self, ops: list[Op], now: float | None) -> list[Decision]:
        if now is None:
            now = self.clock()
        debts: dict[str, float] = {}  # this call's view, so a key named twice sees its own change
        results: list[tuple[bool, float, float]] = []
        ok = True
        for op in ops:
            before = debts.get(op.key)
            if before is None:
                before = max(self._tats.get(op.key, now) - now, 0.0)
            allowed, after = step(before, op)
            debts[op.key] = after
            results.append((allowed, before, after))
            ok = ok and allowed
        if ok:
            changed = {op.key for op, (_, before, after) in zip(ops, results) if after != before}
            new = sum(1 for key in changed if key not in self._tats)
            if new and len(self._tats) + new > self.max_keys:
                self._make_room(now, new)
            for key in changed:
                self._tats[key] = now + debts[key]
        return [decide(op, allowed, after if ok else before) for op, (allowed, before, after) in zip(ops, results)]

    def _make_room(self, now: float, new: int) -> None:
        tats = self._tats
        for key in [k for k, tat in tats.items() if tat <= now]:
            del tats[key]
        keep = min(self.max_keys * 9 // 10, self.max_keys - new)
        if len(tats) > keep:
            for key in heapq.nsmallest(len(tats) - keep, tats, key=tats.__getitem__):
                del tats[key]
                self.evicted += 1
