"""The gateway core, and the same core as a raw ASGI 3 application.

``build_pipeline`` is the one place the request's path through the stages is written:

    health    GET /healthz answers without touching a provider (stages/health.py)
    log api   manual logging, feedback and scores, when logging is on (stages/log_api.py)
    auth      gateway keys: 401/403/429 before the call, spend charged after it (stages/auth.py)
    route     which provider and which path on it (stages/route.py)
    cache key Helicone-Cache-* headers read, the cache key built (stages/cache.py: CachePlan)
    limits    Helicone-RateLimit-Policy and config policies; may fetch the cache lookup in the
              same Redis round trip (stages/ratelimit.py)
    cache     serve a hit, or store what comes back (stages/cache.py: Cache)
    usage     ask OpenAI-compatible streams for usage, hide that chunk (stages/stream_usage.py)
    router    which route target serves, retries and fallbacks before the first byte (stages/router.py)
    translate the unified API's request in the provider's format, the answer back (stages/translate.py)
    dispatch  send on a pooled upstream connection; stream the answer back (stages/dispatch.py)

Stages from later work (auth and keys, retries and fallbacks) slot in around ``route``, each
wrapping the next. The built-in server (server/) calls ``Gateway.handle``
directly; any ASGI server can run ``fastgw.app:app`` instead, which reads its configuration from
the file named by ``FASTGW_CONFIG`` (defaults when unset).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Awaitable, Callable

import orjson

from fastgw import config as config_mod
from fastgw._native import headers as native_headers
from fastgw._native.errors import HeaderError
from fastgw.cache import MemoryCache, RedisCache, make_cache
from fastgw.config import Config
from fastgw.context import RequestContext, new_request_id
from fastgw.errors import BodyTooLarge, GatewayError, InvalidHeader, as_gateway_error
from fastgw.keys.principal import KeyBook
from fastgw.providers.table import build_table
from fastgw.ratelimit import LUA_SCRIPT, MemoryLimiter, RedisLimiter
from fastgw.redis_client import Background, RedisClients
from fastgw.requestlog.logger import RequestLogger
from fastgw.requestlog.record import is_event_stream
from fastgw.stages.auth import Auth
from fastgw.stages.base import Handler, Response
from fastgw.stages.cache import Cache, CachePlan
from fastgw.stages.dispatch import Dispatch
from fastgw.stages.health import Health
from fastgw.stages.log_api import LogAPI
from fastgw.stages.ratelimit import RateLimit
from fastgw.stages.route import Route
from fastgw.stages.router import Router
from fastgw.stages.stream_usage import StreamUsage
from fastgw.stages.translate import Translate
from fastgw.upstream.pool import ConnectionPool

log = logging.getLogger("fastgw.app")


def build_pipeline(config: Config, pool: ConnectionPool, logger: RequestLogger | None,
                   cache_store: MemoryCache | RedisCache | None = None,
                   limiter: MemoryLimiter | RedisLimiter | None = None, keys: KeyBook | None = None,
                   charges: Background | None = None) -> Handler:
    """The stages, innermost first. ``keys`` and ``charges`` (the key store and the budget charges
    still being written) belong to the Gateway, which closes them; a pipeline built without them
    makes its own."""
    handler: Handler = Dispatch(pool)
    handler = Translate(handler)  # the unified API in the provider's own format, per attempt (providers/)
    handler = Router(handler, config, build_table(config))  # retries, fallbacks, balancing (routing/)
    if logger is not None and config.logging.inject_stream_usage:
        handler = StreamUsage(handler)
    cache_store = cache_store or make_cache("memory", config.cache)
    handler = Cache(handler, cache_store)
    handler = RateLimit(handler, config.ratelimit, limiter or MemoryLimiter(),
                        cache_store if isinstance(cache_store, RedisCache) else None, config.logging.prices_file)
    handler = CachePlan(handler, config.cache)
    handler = Route(handler, config, build_table(config))
    if logger is not None:
        handler = LogAPI(handler, logger)  # the gateway's own logging endpoints (need a key like the rest)
    handler = Auth(handler, config, keys, charges)
    handler = Health(handler)
    return handler


class Gateway:
    """Shared dependencies built once per worker process, and the pipeline over them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pool: ConnectionPool | None = None
        self.handler: Handler | None = None
        self.redis = RedisClients()
        self.cache_store: MemoryCache | RedisCache | None = None
        self.limiter: MemoryLimiter | RedisLimiter | None = None
        # Set by the worker before start() when logging is on; None: nothing is logged.
        self.logger: RequestLogger | None = None
        self.keys = KeyBook(config)  # opens its store on the first keyed request
        self.charges = Background()  # budget charges on their way to the key store

    async def start(self) -> None:
        """Needs the running loop: the pool's connections and timers live on it."""
        self.pool = ConnectionPool(self.config.upstream)
        c, r = self.config.cache, self.config.ratelimit
        if c.backend == "memory":
            self.cache_store = make_cache("memory", c)
        else:
            self.cache_store = make_cache(c.backend, c, self.redis.get(c.backend, c.redis_timeout))
        if r.backend == "memory":
            self.limiter = MemoryLimiter()
        else:
            self.limiter = RedisLimiter(self.redis.get(r.backend, r.redis_timeout), r.redis_timeout)
        self.handler = build_pipeline(self.config, self.pool, self.logger, self.cache_store, self.limiter,
                                      self.keys, self.charges)
        await self._load_scripts()

    async def _load_scripts(self) -> None:
        """So the first pipelined EVALSHA finds them; Redis down at start is not fatal (it may come up)."""
        try:
            if isinstance(self.limiter, RedisLimiter):
                async with asyncio.timeout(2.0):
                    await self.limiter.client.script_load(LUA_SCRIPT)
            if isinstance(self.cache_store, RedisCache):
                await self.cache_store.load_scripts()
        except Exception as exc:
            log.warning("Redis not reachable at start (%s): the cache and limits bypass it until it is", exc)

    async def handle(self, ctx: RequestContext) -> Response:
        return await self.handler(ctx)  # type: ignore[misc]

    async def close(self) -> None:
        await self.charges.drain(2.0)  # the charges still on their way land, then the store closes
        await self.keys.close()
        if self.pool is not None:
            self.pool.close()
        await self.redis.aclose()


def context_from_raw(
    method: bytes, target: bytes, raw_headers: list[tuple[bytes, bytes]], body: bytes, t_start: int
) -> RequestContext:
    try:
        parsed = native_headers.parse_headers(raw_headers)
    except HeaderError as exc:
        raise InvalidHeader(str(exc)) from None
    return RequestContext(method, target, parsed, body, t_start, raw_headers)


def sse_error_event(ctx: RequestContext, err: GatewayError) -> bytes:
    """One SSE event carrying an error that cut a stream short, in the shape the provider's SDK
    raises on (the OpenAI SDK raises on a ``data`` object with ``error``; Anthropic's on ``event: error``)."""
    provider = ctx.provider
    if provider is not None and provider.format.name == "anthropic":
        payload = orjson.dumps({"type": "error", "error": {"type": "api_error", "message": err.message}})
        return b"event: error\ndata: " + payload + b"\n\n"
    return b"data: " + err.body() + b"\n\n"


def gateway_headers(request_id: str, gateway_ns: int) -> bytes:
    """The headers the gateway adds to every response, error or not."""
    return b"helicone-id: %s\r\nserver-timing: gateway;dur=%.3f\r\n" % (request_id.encode(), gateway_ns / 1e6)


# --- ASGI ------------------------------------------------------------------------------------------

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ASGIApp:
    """The gateway as an ASGI 3 application, for uvicorn, hypercorn, granian and friends."""

    def __init__(self, config: Config | None = None) -> None:
        self._config = config
        self._gateway: Gateway | None = None
        self._starting: asyncio.Lock | None = None

    async def _get_gateway(self) -> Gateway:
        if self._gateway is None:
            if self._starting is None:
                self._starting = asyncio.Lock()
            async with self._starting:
                if self._gateway is None:
                    cfg = self._config or config_mod.load(os.environ.get("FASTGW_CONFIG") or None)
                    gateway = Gateway(cfg)
                    await gateway.start()
                    self._gateway = gateway
        return self._gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._get_gateway()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._gateway is not None:
                    await self._gateway.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = await self._get_gateway()
        t_start = time.perf_counter_ns()
        ctx: RequestContext | None = None
        try:
            body = await _read_body(receive, gateway.config.server.max_body_size)
            target = scope.get("raw_path") or scope["path"].encode()
            if scope.get("query_string"):
                target += b"?" + scope["query_string"]
            ctx = context_from_raw(scope["method"].encode(), target, list(scope["headers"]), body, t_start)
            response = await gateway.handle(ctx)
        except _ClientGone:
            return
        except Exception as exc:
            err = as_gateway_error(exc)
            if not isinstance(exc, GatewayError):
                log.exception("unexpected error answering %s", scope.get("path", "")[:200])
            rid = ctx.request_id if ctx is not None else new_request_id()
            await _send_error(send, err, rid, time.perf_counter_ns() - t_start, ctx.extra_headers if ctx else b"")
            return
        try:
            await self._send_response(receive, send, ctx, response)
        finally:
            response.close()

    async def _send_response(self, receive: Receive, send: Send, ctx: RequestContext, response: Response) -> None:
        head = response.headers + gateway_headers(ctx.request_id, ctx.gateway_ns()) + ctx.extra_headers
        headers = _block_to_list(head)
        bodyless = response.status in (204, 304) or response.status < 200
        if response.content_length is not None and not bodyless:
            headers.append((b"content-length", b"%d" % response.content_length))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        if response.stream is None or bodyless:
            await send({"type": "http.response.body", "body": b"" if bodyless else (response.body or b"")})
            return
        # Watch for the client leaving, so the upstream request is cancelled rather than read out.
        relay = asyncio.current_task()
        assert relay is not None
        left = False

        async def watch_disconnect() -> None:
            nonlocal left
            while (await receive())["type"] != "http.disconnect":
                pass
            left = True
            relay.cancel()

        watcher = asyncio.create_task(watch_disconnect())
        try:
            async for chunk in response.stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except GatewayError as err:
            # The head is out. An SSE stream of unknown length gets a last event with the error and
            # ends cleanly; any other body is cut (re-raised, so the server aborts the connection).
            if response.content_length is not None or not is_event_stream(response.headers):
                raise
            await send({"type": "http.response.body", "body": sse_error_event(ctx, err)})
        except asyncio.CancelledError:
            if not left:
                raise
            relay.uncancel()  # the client left: nothing to report, and nothing to log as an error
        finally:
            watcher.cancel()


class _ClientGone(Exception):
    """The client disconnected while we were still reading its request."""


async def _read_body(receive: Receive, limit: int) -> bytes:
    parts = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body is over the {limit} byte limit")
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _send_error(send: Send, err: GatewayError, request_id: str, gateway_ns: int, extra: bytes = b"") -> None:
    body = err.body()
    headers = _block_to_list(gateway_headers(request_id, gateway_ns) + extra + err.headers)
    headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _block_to_list(block: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    for line in block.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            out.append((name.strip().lower(), value.strip()))
    return out


app = ASGIApp()
