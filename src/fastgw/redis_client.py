"""The worker's Redis clients: one per URL, shared by the cache and the rate limiter.

Sharing matters beyond saving sockets: a request that is both rate-limited and cached can send the
limiter's script and the cache lookup down one connection in one pipeline, one round trip.

Timeouts are enforced by the callers (``asyncio.timeout`` around each call, so a slow Redis costs a
request at most ``redis_timeout``); the socket timeouts here only bound a connection attempt that
would otherwise hang. redis-py's own retries are turned off: a retry after a timeout would spend the
request's budget twice, and the stages already know what to do when Redis does not answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Coroutine

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger("fastgw.redis")


class RedisClients:
    def __init__(self) -> None:
        self._clients: dict[str, Redis] = {}

    def get(self, url: str, timeout: float) -> Redis:
        client = self._clients.get(url)
        if client is None:
            client = Redis.from_url(
                url, socket_timeout=max(timeout, 1.0), socket_connect_timeout=max(timeout, 1.0),
                retry=Retry(NoBackoff(), 0), health_check_interval=0,
            )
            self._clients[url] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


class Outage:
    """What a stage remembers after Redis failed it: for a second, requests do not ask again.

    Without it a dead Redis would cost every request its full timeout. The first request after
    the second is up asks again, so a Redis that is back is used at once.
    """

    __slots__ = ("what", "consequence", "retry_after", "until")

    def __init__(self, what: str, consequence: str, retry_after: float = 1.0) -> None:
        self.what, self.consequence, self.retry_after = what, consequence, retry_after
        self.until = 0.0

    @property
    def down(self) -> bool:
        return self.until != 0.0 and time.monotonic() < self.until

    def failed(self, exc: BaseException) -> None:
        log.warning("%s unavailable (%s); %s, asking again in %.0fs", self.what, exc, self.consequence,
                    self.retry_after)
        self.until = time.monotonic() + self.retry_after


class Background:
    """Redis writes the response does not wait for (cache stores, u=cents charges).

    The loop keeps only weak references to tasks, so they are held here until done.
    """

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float) -> None:
        """Let the writes still running finish (at shutdown), for at most ``timeout`` seconds."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
