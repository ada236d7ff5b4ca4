"""One way to drive either limiter, so the same tests hold both to the same semantics.

Each test body is a coroutine run by ``asyncio.run`` in the test (no pytest-asyncio); the Redis
client is made inside that loop and closed before it ends. Time: the memory limiter gets a clock
the test moves; the Redis limiter keeps the server's clock, and ``advance`` moves its
``time_offset_s`` test hook, so real time also passes (milliseconds) and Redis values are compared
approximately.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import redis.asyncio

from fastgw.ratelimit import MemoryLimiter, RedisLimiter


class Harness:
    def __init__(self, kind: str, redis_url: str | None = None) -> None:
        self.kind = kind
        self.redis_url = redis_url
        self.t = 1000.0
        self.client: redis.asyncio.Redis | None = None
        self.limiter: MemoryLimiter | RedisLimiter

    @property
    def tol(self) -> float:
        """How far a time read back may be from the ideal: real time passes against Redis."""
        return 1e-5 if self.kind == "memory" else 0.5

    def advance(self, seconds: float) -> None:
        if isinstance(self.limiter, MemoryLimiter):
            self.t += seconds
        else:
            self.limiter.time_offset_s += seconds

    def run(self, body: Callable[[Harness], Awaitable[None]]) -> None:
        async def main() -> None:
            if self.kind == "memory":
                self.limiter = MemoryLimiter(clock=lambda: self.t)
                await body(self)
                return
            assert self.redis_url is not None
            self.client = redis.asyncio.Redis.from_url(self.redis_url)
            try:
                self.limiter = RedisLimiter(self.client, timeout=2.0)
                await body(self)
            finally:
                await self.client.aclose()

        asyncio.run(main())
