"""StreamUsage stage: exact usage for OpenAI-compatible streams whose client didn't ask for it.

It adds ``stream_options.include_usage: true`` to the upstream request and wraps the streamed answer
in a filter (stream/sse.py) that takes out what that changes (the extra usage chunk, and the
``"usage":null`` member of every other chunk), so the client sees what it would have seen direct
and the log still gets the provider's own counts. ``logging.inject_stream_usage: false`` leaves the
stage out of the pipeline; a provider whose catalog entry says ``stream_usage: false`` is never asked.

The upstream gets the rewritten body for the call only: the log keeps the body the client sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Coroutine
from typing import Any

import orjson

from fastgw._native import recordwire
from fastgw.context import RequestContext
from fastgw.requestlog.record import is_event_stream
from fastgw.stages.base import Handler, Response, RewrittenStream
from fastgw.stream.sse import UsageChunkFilter

# memmem in C: Python's ``in`` took 0.5–1.2 µs to find nothing in a 0.5–1 KB chat body, on every
# OpenAI-compatible chat request.
_STREAM_KEY = (b'"stream"',)
_ASK_USAGE = b',"stream_options":{"include_usage":true}'
# Forwarded header lines are lower-cased "name: value\r\n" (_native/headers.pyi: ParsedHeaders.forward).
_ACCEPT_ENCODING = re.compile(rb"(?m)^accept-encoding:[^\n]*\n")


def wants_injection(ctx: RequestContext) -> bool:
    provider = ctx.provider
    if provider is None or provider.format.name != "openai" or not provider.stream_usage or ctx.method != b"POST":
        return False
    path = ctx.upstream_path.partition(b"?")[0]  # not `in` nor find(): see route.origin_form
    return path.endswith(b"/chat/completions") and recordwire.contains_any(ctx.body, _STREAM_KEY)


def may_ask_usage(options: object) -> bool:
    """Whether the gateway may set include_usage in these ``stream_options``: absent (None) or null,
    or an object whose include_usage is absent or exactly false. Anything else (include_usage
    true, or a value the provider will judge itself: ``"true"``, ``1``, a non-object) goes as sent."""
    if options is None:
        return True
    return isinstance(options, dict) and options.get("include_usage", False) is False


def asking_usage(options: dict[str, Any] | None) -> dict[str, Any]:
    """``stream_options`` (``may_ask_usage`` allowed them) with include_usage set: the one place
    both the pass-through body (``injected_body``) and a translated call (stages/translate.py) get it."""
    return {**(options or {}), "include_usage": True}


def injected_body(body: bytes) -> bytes | None:
    """``body`` asking for stream usage, or None when the request is left as the client sent it.

    There are two cases:
    1. No ``stream_options`` (the common one): the member is spliced in before the closing brace,
       so every byte the client sent stays as it was.
    2. ``stream_options`` null or an object to change: the body is encoded again with the stdlib
       json module, which keeps integers of any size exact (orjson turns those past 64 bits into
       floats).
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # the provider will answer the bad JSON itself
    if not isinstance(data, dict) or data.get("stream") is not True:
        return None
    if "stream_options" not in data:
        end = body.rstrip().rfind(b"}")  # a parsed object: its last byte but whitespace is its "}"
        return body[:end] + _ASK_USAGE + body[end:]
    if not may_ask_usage(data["stream_options"]):
        return None
    exact = json.loads(body)
    exact["stream_options"] = asking_usage(exact["stream_options"])
    return json.dumps(exact, ensure_ascii=False, separators=(",", ":")).encode()


def identity_encoding(forward: bytes) -> bytes:
    """The client's forwarded headers with its Accept-Encoding replaced by ``identity``: the filter
    reads the stream as plain SSE, so an injected request must not get it compressed."""
    if b"accept-encoding:" in forward:
        forward = _ACCEPT_ENCODING.sub(b"", forward)
    return forward + b"accept-encoding: identity\r\n"


class StreamUsage:
    def __init__(self, next: Handler) -> None:
        self.next = next

    def __call__(self, ctx: RequestContext) -> Coroutine[Any, Any, Response]:
        # Not a coroutine itself: a request that gets no injection (all but OpenAI-compatible
        # streams) gets the next stage's coroutine as it is, without a frame of this stage.
        if wants_injection(ctx):
            body = injected_body(ctx.body)
            if body is not None:
                return self._filtered(ctx, body)
        return self.next(ctx)

    async def _filtered(self, ctx: RequestContext, body: bytes) -> Response:
        client_body = ctx.client_body = ctx.body
        ctx.body, ctx.usage_injected = body, True
        try:
            response = await self.next(ctx)
        finally:
            ctx.body, ctx.client_body = client_body, None  # the log keeps what the client sent
        if 200 <= response.status < 300 and is_event_stream(response.headers):
            usage_filter = UsageChunkFilter()
            if response.body is not None:
                response.body = usage_filter.feed(response.body) + usage_filter.finish()
                response.content_length = len(response.body)
                ctx.hidden_usage = usage_filter.usage_event
            elif response.stream is not None:
                response.stream = RewrittenStream(response.stream, usage_filter, ctx)  # type: ignore[assignment]
                response.content_length = None  # the length changes: re-framed as chunked
        return response
