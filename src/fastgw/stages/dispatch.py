"""The terminal stage: serialise the upstream request, send it on a pooled connection, and wrap
the answer as a Response whose body streams from the socket as it arrives."""

from __future__ import annotations

import time

from fastgw.context import RequestContext
from fastgw.errors import UpstreamProtocolError
from fastgw.providers.credentials import credential_line
from fastgw.stages.base import Response
from fastgw.stages.stream_usage import identity_encoding
from fastgw.upstream.pool import ConnectionPool

# Response headers that describe one hop, not the message (RFC 9110 §7.6.1), plus the framing
# headers the server writes itself.
_DROP_RESPONSE = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"content-length",
    }
)
_BODYLESS_METHODS = frozenset({b"GET", b"HEAD", b"DELETE", b"OPTIONS"})
_IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})


def response_head_block(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, int | None]:
    """The end-to-end headers as one block, and the Content-Length the upstream announced.

    Names listed in the upstream's own Connection header are hop-by-hop too, and are dropped (a
    second pass, only when such a list exists: it almost never does).
    """
    lines = []
    length: int | None = None
    listed: set[bytes] = set()
    for name, value in headers:
        lower = name.lower()
        if lower in _DROP_RESPONSE:
            if lower == b"content-length" and value.strip().isdigit():
                length = int(value)
            elif lower == b"connection":
                listed.update(t.strip().lower() for t in value.split(b","))
            continue
        lines.append(name + b": " + value + b"\r\n")
    listed -= {b"", b"close", b"keep-alive"}
    if listed:
        lines = [line for line in lines if line.split(b":", 1)[0].lower() not in listed]
    return b"".join(lines), length


class Dispatch:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    async def __call__(self, ctx: RequestContext) -> Response:
        provider = ctx.provider
        assert provider is not None, "the route stage runs first"
        h = ctx.headers
        forward = ctx.upstream_head
        if forward is not None:  # a translated attempt: stages/translate.py wrote every header
            auth = b""
        elif ctx.principal is not None:  # a gateway key: never sent upstream (providers/credentials.py)
            auth = credential_line(ctx, provider)
        elif provider.auth_line is not None:
            auth = provider.auth_line
        else:
            auth = b""
            if h.authorization is not None:
                auth = b"authorization: " + h.authorization + b"\r\n"
            if h.api_key is not None:
                auth += b"x-api-key: " + h.api_key + b"\r\n"
        if forward is None:
            forward = h.forward
            if ctx.usage_injected:  # the answer goes through the usage filter: it must come uncompressed
                forward = identity_encoding(forward)
        body = ctx.body
        method = ctx.method
        framing = b"" if (not body and method in _BODYLESS_METHODS) else b"content-length: %d\r\n" % len(body)
        data = b"".join(
            (method, b" ", ctx.upstream_path, b" HTTP/1.1\r\nhost: ", provider.origin.host_header, b"\r\n",
             forward, auth, framing, b"\r\n", body)
        )
        t0 = time.perf_counter_ns()
        try:
            # find(), not `in`: see route.origin_form.
            replayable = method in _IDEMPOTENT_METHODS or h.forward.find(b"idempotency-key:") >= 0
            upstream = await self.pool.request(provider.origin, data, method == b"HEAD", replayable)
        finally:
            ctx.upstream_ns += time.perf_counter_ns() - t0
        if not 100 <= upstream.status <= 599:
            upstream.close()
            raise UpstreamProtocolError(f"upstream answered with status {upstream.status}")
        block, length = response_head_block(upstream.headers)
        if upstream.complete and upstream.error is None:
            body_bytes = upstream.take_body()
            upstream.close()
            if method == b"HEAD":  # no body, but the length a GET would have had
                return Response(upstream.status, block, content_length=length)
            return Response(upstream.status, block, body=body_bytes)
        return Response(upstream.status, block, stream=upstream, content_length=length)
