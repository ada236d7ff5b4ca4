"""RequestContext: everything one request carries through the pipeline, in slots, built once."""

from __future__ import annotations

import os
import time
import uuid
from typing import TYPE_CHECKING

from fastgw.errors import InvalidHeader

if TYPE_CHECKING:
    from fastgw._native.headers import ParsedHeaders
    from fastgw.providers.table import Provider


def new_request_id() -> str:
    """A random (version 4) UUID, formatted without going through uuid.UUID's slower constructor."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def request_id_for(client_value: str | None) -> str:
    """The client's Helicone-Request-Id when it is a valid UUID; a new one when absent; else 400."""
    if client_value is None:
        return new_request_id()
    try:
        return str(uuid.UUID(client_value))
    except ValueError:
        raise InvalidHeader(f"Helicone-Request-Id must be a UUID, got {client_value[:64]!r}") from None


def request_id_of_refused(raw_headers: list[tuple[bytes, bytes]]) -> str:
    """The id of a request refused before it had a context (413, 431, 408, a bad header).

    The client's Helicone-Request-Id when it is a valid UUID, as for any other request, so the
    client can find the refusal in the log by the id it chose; a new id otherwise, never an error:
    the request is being refused already. The last such header decides, as in ``parse_headers``.
    """
    for name, value in reversed(raw_headers):
        if len(name) == 19 and name.lower() == b"helicone-request-id":
            try:
                return request_id_for(value.strip(b" \t").decode("latin-1"))
            except InvalidHeader:
                break
    return new_request_id()


class RequestContext:
    __slots__ = (
        "request_id", "method", "target", "http_version", "headers", "raw_headers", "body", "client",
        "t_start", "created_ms", "upstream_ns", "provider", "upstream_path", "usage_injected",
        "hidden_usage", "log_skip", "cache_plan", "cache_status", "cache_prefetch", "extra_headers",
        "spend", "unified", "model_override", "retry_count", "fallback_index", "attempts", "principal",
        "upstream_head", "client_body",
    )

    def __init__(
        self, method: bytes, target: bytes, headers: ParsedHeaders, body: bytes, t_start: int,
        raw_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.request_id = request_id_for(headers.helicone.request_id)
        self.method = method  # upper-case, as on the request line
        self.target = target  # path and query, as on the request line
        self.http_version = "1.1"
        self.headers = headers
        self.raw_headers = raw_headers or []  # as received, for the (redacted) log record
        self.body = body
        self.client: tuple[str, int] | None = None
        self.t_start = t_start  # perf_counter_ns when the request's head was complete
        self.created_ms = time.time_ns() // 1_000_000  # wall clock, for the log
        self.upstream_ns = 0  # time spent waiting on upstreams (connect, send, response head)
        self.provider: Provider | None = None  # set by the route stage
        self.upstream_path = b""  # path and query to request from the provider's origin
        self.usage_injected = False  # we asked the upstream for stream usage the client didn't want
        # The body as the client sent it while ``body`` is StreamUsage's rewrite for the upstream;
        # None: ``body`` is the client's.
        self.client_body: bytes | None = None
        self.hidden_usage = b""  # the usage event(s) that request produced, kept from the client
        self.log_skip = False  # the gateway's own endpoints (health, log API) are not request rows
        self.cache_plan = None  # stages/cache.py: (directive, key) when this request uses the cache
        self.cache_status = ""  # "hit", "miss", "bypass" (cache unavailable); "" when not cached
        self.cache_prefetch = None  # a cache lookup reply that rode the rate limiter's round trip
        self.extra_headers = b""  # response headers stages add (Helicone-Cache-*, Helicone-RateLimit-*)
        self.spend = None  # stages/ratelimit.py: u=cents buckets to charge once the cost is known
        # The unified API (POST /v1/chat/completions naming "provider/model" or a route): the
        # request's OpenAI chat body, parsed once; None for pass-through requests.
        self.unified = None
        self.model_override = None  # the model this attempt sends upstream; None: as requested
        self.retry_count = 0  # attempts beyond the first, over every target (stages/router.py)
        self.fallback_index = -1  # -1: the first target served; 0: the first fallback, ...
        self.attempts: list = []  # one entry per upstream attempt, for the log (stages/router.py)
        self.principal = None  # the gateway key that authenticated the request (stages/auth.py)
        # A translated attempt's request headers, credential included (stages/translate.py); None:
        # Dispatch sends the client's forwarded headers and credential, as for pass-through.
        self.upstream_head: bytes | None = None

    def gateway_ns(self) -> int:
        """The gateway's own time so far: elapsed minus the time spent waiting on upstreams."""
        return time.perf_counter_ns() - self.t_start - self.upstream_ns
