"""RedisLimiter: buckets shared by every worker and host, decided in one Lua script per request.

Why a script: check-then-consume across several buckets must be atomic, or two gateways could
both see the last unit free, and a request refused by one policy could still have consumed
another's. Redis runs a script without interleaving other commands, so one EVALSHA is one atomic,
all-or-nothing decision over all of a request's buckets, in one round trip.

Why the server's clock (``TIME`` inside the script): gateway hosts' clocks drift apart, and a bucket
written by one host and read by another would refill early or late by the skew. Redis 5+ replicates
a script's effects rather than the script, so a script that reads TIME may write; the script calls
``redis.replicate_commands()`` first where it exists, which is what Redis 3.2-4 need and a no-op
since (the Debian redis-server the tests run is 7.0). Times are seconds since ``EPOCH`` (not 1970)
so a double keeps them to about 10 ns, and stored values are written with ``%.17g`` because Lua's
own number-to-string keeps only 14 digits.

Tests cannot wait a minute for a bucket to refill (windows are at least 60 s), so the script adds
``time_offset_s`` to the server's time; it is 0 unless a test sets the attribute. ``now`` is part
of the method signatures only for parity with MemoryLimiter and must be None here.

Embedding: the cache stage may want a lookup and the rate-limit decision in one round trip. The
Lua source is split so that ``LUA_FUNCTION`` can be pasted into another script, after that
script's own ``redis.replicate_commands`` line and before its body:

    fastgw_ratelimit(KEYS, ARGV, k0, a0) -> reply

``k0`` and ``a0`` are where this call's keys and arguments start (1-based), so the host script can
keep its own before or after them. It reads KEYS[k0 .. k0+N-1] and ARGV[a0 .. a0+1+4N]:

    ARGV[a0]          seconds to add to the server's time (0 except in tests)
    ARGV[a0+1]        N, the number of operations
    then per operation i = 1..N, at ARGV[a0+2+4(i-1)] onwards:
        quota         the policy's quota (a decimal string)
        window        the policy's window in seconds
        amount        units to take (1 for a request check, 0 for a cents check, the cost to spend)
        mode          "c" consume if it fits, "p" allow while the balance is positive, "s" spend
    KEYS[k0+i-1]      operation i's bucket (``prefix`` + the segment key)

The reply is a flat array ``{ok, allowed_1, debt_1, ..., allowed_N, debt_N}``: ``ok`` 1 when every
operation was allowed and the whole call was applied, else 0 and nothing was written; ``allowed_i``
1 or 0; ``debt_i`` (a string, since Redis would truncate a Lua number to an integer) the bucket's
seconds-short-of-full to report: after the operation when applied, before it otherwise.
``script_args`` builds KEYS and ARGV for a list of ``Op``; ``decisions_from_reply`` reads the reply.

Failure: a call that does not complete within ``timeout`` (connecting and any retries the client
makes included) raises ``LimiterUnavailable``, as do connection errors and the server states in
which it cannot take writes. A call that timed out may still have been applied once the server
got to it, so it can have charged its buckets; that errs towards refusing, and only for calls made
while Redis was stalled.

A bucket key is written only when its debt grows, with ``SET key TAT PX ceil(debt ms)``: it expires
the moment the bucket is full again, so idle buckets cost Redis nothing. On Redis Cluster, the keys
of one call would need one hash slot (a ``{tag}`` in the prefix); the client taken here is a plain
``redis.asyncio.Redis``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio
import redis.exceptions

from fastgw.ratelimit.gcra import EPS_S, Decision, Op, check_op, decide, spend_op
from fastgw.ratelimit.policy import Policy, format_quota

EPOCH = 1_700_000_000  # seconds since 1970 at 2023-11-14; times in the script count from here
DEFAULT_PREFIX = "fastgw:rl:"

LUA_FUNCTION = """
local function fastgw_ratelimit(keys, argv, k0, a0)
  local eps = @EPS@
  local t = redis.call('TIME')
  local now = (tonumber(t[1]) - @EPOCH@) + tonumber(t[2]) / 1000000 + tonumber(argv[a0])
  local n = tonumber(argv[a0 + 1])
  local debts, order, changed = {}, {}, {}
  local allowed, before, after = {}, {}, {}
  local ok = 1
  for i = 1, n do
    local key = keys[k0 + i - 1]
    local a = a0 + 2 + (i - 1) * 4
    local quota, window = tonumber(argv[a]), tonumber(argv[a + 1])
    local amount, mode = tonumber(argv[a + 2]), argv[a + 3]
    local debt = debts[key]
    if debt == nil then
      local tat = tonumber(redis.call('GET', key))
      debt = 0
      if tat ~= nil and tat > now then debt = tat - now end
      order[#order + 1] = key
    end
    local new, yes = debt, true
    if mode == 'p' then
      yes = debt < window - eps
    else
      new = debt + amount * window / quota
      if mode == 'c' and new > window + eps then
        yes, new = false, debt
      end
    end
    if new ~= debt then changed[key] = true end
    debts[key] = new
    allowed[i], before[i], after[i] = yes, debt, new
    if not yes then ok = 0 end
  end
  local reply = {ok}
  for i = 1, n do
    reply[#reply + 1] = allowed[i] and 1 or 0
    if ok == 1 then
      reply[#reply + 1] = string.format('%.17g', after[i])
    else
      reply[#reply + 1] = string.format('%.17g', before[i])
    end
  end
  if ok == 1 then
    for _, key in ipairs(order) do
      if changed[key] then
        local debt = debts[key]
        redis.call('SET', key, string.format('%.17g', now + debt), 'PX', math.ceil(debt * 1000))
      end
    end
  end
  return reply
end
""".replace("@EPS@", repr(EPS_S)).replace("@EPOCH@", str(EPOCH))

LUA_SCRIPT = (
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    + LUA_FUNCTION
    + "return fastgw_ratelimit(KEYS, ARGV, 1, 1)\n"
)

# Redis is gone, slow, or in a state where it cannot take writes: the limiter cannot decide, and
# whether that lets requests through is the stage's policy, not ours. Other errors are bugs.
_UNAVAILABLE = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError (restarting, loading data)
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica after failover
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    OSError,  # includes the builtin TimeoutError that asyncio.timeout raises
)


class LimiterUnavailable(Exception):
    """The shared store could not be asked in time; the caller chooses fail-open or fail-closed."""


def script_args(
    ops: Sequence[Op], prefix: str = DEFAULT_PREFIX, time_offset_s: float = 0.0
) -> tuple[list[str], list[str]]:
    """KEYS and ARGV for one call of the script (layout in the module docstring)."""
    keys = [prefix + op.key for op in ops]
    args = [repr(float(time_offset_s)), str(len(ops))]
    for op in ops:
        args += (format_quota(op.policy.quota), str(op.policy.window_s), repr(op.amount), op.mode)
    return keys, args


def decisions_from_reply(reply: Sequence[Any], ops: Sequence[Op]) -> list[Decision]:
    """The Decisions for ``ops`` from the script's reply (bytes or str, whatever the client decodes)."""
    if len(reply) != 1 + 2 * len(ops):
        raise ValueError(f"rate-limit script replied with {len(reply)} values for {len(ops)} operations")
    return [decide(op, int(reply[1 + 2 * i]) == 1, max(float(reply[2 + 2 * i]), 0.0)) for i, op in enumerate(ops)]


class RedisLimiter:
    def __init__(self, client: redis.asyncio.Redis, timeout: float = 0.25, prefix: str = DEFAULT_PREFIX) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.client = client  # shared with others (the cache); closing it is its owner's job
        self.timeout = timeout
        self.prefix = prefix
        self.time_offset_s = 0.0  # a test hook: added to the server's clock (see the module docstring)
        self.failures = 0  # calls that raised LimiterUnavailable, for metrics
        self._script = client.register_script(LUA_SCRIPT)

    async def check(self, key: str, policy: Policy, now: float | None = None) -> Decision:
        return (await self.apply([check_op(key, policy)], now))[0]

    async def check_many(self, items: list[tuple[str, Policy]], now: float | None = None) -> list[Decision]:
        return await self.apply([check_op(k, p) for k, p in items], now)

    async def spend(self, key: str, policy: Policy, amount: float, now: float | None = None) -> None:
        op = spend_op(key, policy, amount)
        if op.amount > 0:  # a free response needs no round trip
            await self.apply([op], now)

    async def apply(self, ops: list[Op], now: float | None = None) -> list[Decision]:
        """Any mix of operations in one script call, all-or-nothing: what the other methods are made of."""
        if now is not None:
            raise ValueError("RedisLimiter decides by the Redis server's clock; now must be None")
        if not ops:
            return []
        keys, args = script_args(ops, self.prefix, self.time_offset_s)
        try:
            async with asyncio.timeout(self.timeout):
                reply = await self._script(keys=keys, args=args)
        except _UNAVAILABLE as exc:
            self.failures += 1
            raise LimiterUnavailable(f"rate-limit store unavailable: {type(exc).__name__}: {exc}") from exc
        except redis.exceptions.ResponseError as exc:
            if not str(exc).startswith("BUSY"):  # another script is hogging the server
                raise
            self.failures += 1
            raise LimiterUnavailable(f"rate-limit store busy: {exc}") from exc
        return decisions_from_reply(reply, ops)
