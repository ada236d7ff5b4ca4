"""Helicone-compatible response caching: directives from headers, entries, and two backends.

The stage's sequence: ``directive_from_headers`` (None: skip the cache), build the key,
``await cache.lookup(key, directive)``; on a hit serve ``lookup.entry`` with its ``index``; on a
miss go upstream and, when ``lookup.next_slot`` is not None, ``await cache.store(key,
lookup.next_slot, entry, directive.ttl_s)`` (streams recorded with StreamRecorder). Either call
may raise CacheUnavailable (Redis only): serve the request uncached and don't store it.
"""

from __future__ import annotations

from typing import Any

from fastgw.cache.base import CacheUnavailable, Lookup
from fastgw.cache.control import (
    MAX_BUCKET,
    MAX_TTL_S,
    CacheDirective,
    directive_from_headers,
    parse_cache_control,
    parse_ignore_keys,
)
from fastgw.cache.entry import (
    CachedResponse,
    StreamRecorder,
    decode,
    encode,
    split_sse_events,
    stream_is_complete,
)
from fastgw.cache.memory import MemoryCache
from fastgw.cache.redis_store import (
    LOOKUP_LUA,
    LOOKUP_SHA,
    STORE_LUA,
    STORE_SHA,
    RedisCache,
    redis_key,
)

__all__ = [
    "LOOKUP_LUA",
    "LOOKUP_SHA",
    "MAX_BUCKET",
    "MAX_TTL_S",
    "STORE_LUA",
    "STORE_SHA",
    "CacheDirective",
    "CacheUnavailable",
    "CachedResponse",
    "Lookup",
    "MemoryCache",
    "RedisCache",
    "StreamRecorder",
    "decode",
    "directive_from_headers",
    "encode",
    "make_cache",
    "parse_cache_control",
    "parse_ignore_keys",
    "redis_key",
    "split_sse_events",
    "stream_is_complete",
]


def make_cache(backend: str, config: Any, redis_client: Any = None) -> MemoryCache | RedisCache:
    """The backend named in config (``config`` is a CacheConfig).

    For Redis, a given client (the one the rate limiter shares) stays its owner's to close;
    without one, a client is made from the URL and closed by ``cache.aclose()``. Either way it
    must be bytes-mode (decode_responses off). The client connects lazily, on first use, so
    calling this outside the event loop that will use the cache is fine.
    """
    if backend == "memory":
        return MemoryCache(int(config.max_bytes), int(config.max_entry_bytes))
    if backend.startswith(("redis://", "rediss://")):
        owns = redis_client is None
        if owns:
            from redis.asyncio import Redis

            redis_client = Redis.from_url(backend)
        return RedisCache(redis_client, float(config.redis_timeout), int(config.max_entry_bytes), owns_client=owns)
    raise ValueError(f"unknown cache backend {backend!r}: memory or redis://host:port[/db]")
