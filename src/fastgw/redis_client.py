"""The worker's Redis clients: one per URL, shared by the cache and the rate limiter.

Sharing matters beyond saving sockets: a request that is both rate-limited and cached can send the
limiter's script and the cache lookup down one connection in one pipeline, one round trip.

Timeouts are enforced by the callers (``asyncio.timeout`` around each call, so a slow Redis costs a
request at most ``redis_timeout``); the socket timeouts here only bound a connection attempt that
would otherwise hang. redis-py's own retries are turned off: a retry after a timeout would spend the
request's budget twice, and the stages already know what to do when Redis does not answer.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


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
