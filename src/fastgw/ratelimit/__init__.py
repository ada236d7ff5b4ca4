"""Rate limiting by Helicone-RateLimit-Policy: policies, bucket keys, and two interchangeable limiters.

``MemoryLimiter`` (one worker) and ``RedisLimiter`` (shared) have the same async methods: ``check``,
``check_many`` (all-or-nothing over a request's policies), ``spend`` (the real cost in cents, after
the response) and ``apply`` (any mix of ``Op``s, all-or-nothing). The pipeline stage that uses
them lives in ``fastgw.stages``.
"""

from fastgw.ratelimit.gcra import (
    CONSUME,
    POSITIVE,
    SPEND,
    Decision,
    Op,
    check_op,
    spend_op,
)
from fastgw.ratelimit.memory import MemoryLimiter
from fastgw.ratelimit.policy import (
    MissingSegment,
    Policy,
    PolicyError,
    parse_policy,
    segment_key,
)
from fastgw.ratelimit.redis_store import (
    DEFAULT_PREFIX,
    LUA_FUNCTION,
    LUA_SCRIPT,
    LimiterUnavailable,
    RedisLimiter,
    decisions_from_reply,
    script_args,
)

__all__ = [
    "CONSUME", "DEFAULT_PREFIX", "LUA_FUNCTION", "LUA_SCRIPT", "POSITIVE", "SPEND", "Decision", "LimiterUnavailable",
    "MemoryLimiter", "MissingSegment", "Op", "Policy", "PolicyError", "RedisLimiter", "check_op",
    "decisions_from_reply", "parse_policy", "script_args", "segment_key", "spend_op",
]
