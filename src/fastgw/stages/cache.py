"""Cache stages: Helicone-Cache-* semantics over the memory or Redis store (fastgw/cache/).

Two stages, because the rate limiter sits between them:

    CachePlan  reads the cache headers and builds the key (before rate limiting, so the limiter
               can fetch the cache lookup in its own Redis round trip when both use Redis)
    Cache      looks up (or takes the prefetched reply), serves a hit, or lets the request go
               upstream and stores a 2xx answer in the slot the lookup named

A request without cache headers costs three attribute reads here. A stream is stored only once
it ended the way its format ends (``data: [DONE]``, ``message_stop``); one the client or the
upstream cut short never is. A hit's body is the stored one, events replayed one chunk each, so
SDK streaming code sees the original stream. When the store does not answer (Redis down or slow)
the request goes upstream uncached, and ``bypasses`` counts it; for a second after such a failure
the store is not asked at all (``redis_client.Outage``), so a dead Redis costs each request nothing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fastgw._native import cachekey
from fastgw.cache.base import CacheUnavailable, Lookup
from fastgw.cache.control import CacheDirective, directive_from_headers
from fastgw.cache.entry import CachedResponse, StreamRecorder
from fastgw.cache.memory import MemoryCache
from fastgw.context import RequestContext
from fastgw.redis_client import Background, Outage
from fastgw.requestlog.record import is_event_stream
from fastgw.stages.base import Handler, Response, TappedStream

if TYPE_CHECKING:
    from fastgw.cache.redis_store import RedisCache
    from fastgw.config import CacheConfig


def _cache_control(ctx: RequestContext) -> bytes | None:
    for name, value in ctx.raw_headers:
        if len(name) == 13 and name.lower() == b"cache-control":
            return value
    return None


class CachePlan:
    def __init__(self, next: Handler, config: CacheConfig) -> None:
        self.next = next
        self.default_ttl = int(config.default_ttl)

    async def __call__(self, ctx: RequestContext) -> Response:
        h = ctx.headers.helicone
        if h.cache_enabled is not None or h.cache_read is not None or h.cache_save is not None:
            directive = directive_from_headers(h, _cache_control(ctx), self.default_ttl)
            if directive is not None:
                ctx.cache_plan = (directive, self.key(ctx, directive))
        return await self.next(ctx)

    @staticmethod
    def key(ctx: RequestContext, directive: CacheDirective) -> bytes:
        provider = ctx.provider
        assert provider is not None, "the route stage runs first"
        h = ctx.headers
        # The tenant: whatever credential the caller presented (a gateway key, later, is one).
        credential = (h.authorization or b"") + b"\x00" + (h.api_key or b"")
        return cachekey.cache_key(
            (directive.seed or "").encode(), provider.name.encode(), str(provider.origin).encode(),
            ctx.upstream_path, ctx.body, directive.ignore_keys, credential,
        )


class Cache:
    def __init__(self, next: Handler, store: MemoryCache | RedisCache) -> None:
        self.next = next
        self.store = store
        self.memory = isinstance(store, MemoryCache)
        self.bypasses = 0  # requests served without the cache because the store was unavailable
        self.outage = Outage("cache", "requests bypass it")
        self.background = Background()

    async def __call__(self, ctx: RequestContext) -> Response:
        plan = ctx.cache_plan
        if plan is None:
            return await self.next(ctx)
        directive, key = plan
        lookup = await self._lookup(ctx, directive, key)
        if lookup is None:  # the store is unavailable: straight upstream, nothing stored
            ctx.cache_status = "bypass"
            return await self.next(ctx)
        if lookup.entry is not None:
            return self._hit(ctx, lookup)
        if directive.read:
            ctx.cache_status = "miss"
            ctx.extra_headers += b"helicone-cache: MISS\r\n"
        response = await self.next(ctx)
        slot = lookup.next_slot
        if slot is None or not 200 <= response.status < 300:
            return response
        if response.body is not None:
            self._store(key, slot, CachedResponse(
                response.status, response.headers, body=response.body, latency_ms=_ms_since(ctx.t_start),
                usage=ctx.hidden_usage), directive.ttl_s)
        elif response.stream is not None:
            response.stream = RecordingStream(self, ctx, response, key, slot, directive.ttl_s)  # type: ignore[assignment]
        return response

    async def _lookup(self, ctx: RequestContext, directive: CacheDirective, key: bytes) -> Lookup | None:
        if self.memory:
            return self.store.lookup_now(key, directive)  # type: ignore[union-attr]
        if not self.outage.down:
            try:
                if ctx.cache_prefetch is not None:
                    return await self.store.lookup_from_reply(ctx.cache_prefetch, key, directive)  # type: ignore[union-attr]
                return await self.store.lookup(key, directive)
            except CacheUnavailable as exc:
                self.outage.failed(exc)
        self.bypasses += 1
        return None

    def _hit(self, ctx: RequestContext, lookup: Lookup) -> Response:
        entry = lookup.entry
        assert entry is not None
        ctx.cache_status = "hit"
        ctx.hidden_usage = entry.usage  # the log prices the saved cost from it
        ctx.extra_headers += b"helicone-cache: HIT\r\nhelicone-cache-bucket-idx: %d\r\nhelicone-cache-latency: %d\r\n" % (
            lookup.index or 0, entry.latency_ms)
        if entry.events is not None:
            return Response(entry.status, entry.headers, stream=ReplayStream(entry.events))
        return Response(entry.status, entry.headers, body=entry.body or b"")

    def _store(self, key: bytes, slot: int, entry: CachedResponse, ttl_s: int) -> None:
        if self.memory:
            self.store.store_now(key, slot, entry, ttl_s)  # type: ignore[union-attr]
            return
        if not self.outage.down:
            self.background.spawn(self._store_async(key, slot, entry, ttl_s))

    async def _store_async(self, key: bytes, slot: int, entry: CachedResponse, ttl_s: int) -> None:
        try:
            await self.store.store(key, slot, entry, ttl_s)
        except CacheUnavailable as exc:
            self.outage.failed(exc)


def _ms_since(t_start: int) -> int:
    return (time.perf_counter_ns() - t_start) // 1_000_000


class ReplayStream:
    """A stored stream, one event per chunk, as the original arrived (give or take its pacing)."""

    __slots__ = ("_events", "_i")

    def __init__(self, events: list[bytes]) -> None:
        self._events = events
        self._i = 0

    def __aiter__(self) -> ReplayStream:
        return self

    async def __anext__(self) -> bytes:
        if self._i >= len(self._events):
            raise StopAsyncIteration
        self._i += 1
        return self._events[self._i - 1]

    def close(self) -> None:
        self._i = len(self._events)


class RecordingStream(TappedStream):
    """The upstream body on its way to the client, recorded; stored only if it ran to its end."""

    __slots__ = ("_cache", "_ctx", "_key", "_recorder", "_response", "_slot", "_ttl")

    def __init__(self, cache: Cache, ctx: RequestContext, response: Response, key: bytes, slot: int, ttl: int) -> None:
        assert response.stream is not None
        super().__init__(response.stream)
        self._cache, self._ctx, self._response = cache, ctx, response
        self._key, self._slot, self._ttl = key, slot, ttl
        self._recorder = StreamRecorder(cache.store.max_entry_bytes)

    def seen(self, chunk: bytes) -> None:
        self._recorder.feed(chunk)  # past the size bound it gives up, and finish says so

    def ended(self) -> None:
        ctx, response, recorder = self._ctx, self._response, self._recorder
        latency = _ms_since(ctx.t_start)
        if is_event_stream(response.headers):
            provider = ctx.provider
            events = recorder.finish(provider.format.name if provider is not None else "")
            if events is None:  # too large, or not ended the way its format ends
                return
            entry = CachedResponse(response.status, response.headers, events=events, latency_ms=latency,
                                   usage=ctx.hidden_usage)
        else:
            body = recorder.body()
            if body is None or (response.content_length is not None and len(body) != response.content_length):
                return
            entry = CachedResponse(response.status, response.headers, body=body, latency_ms=latency)
        self._cache._store(self._key, self._slot, entry, self._ttl)
