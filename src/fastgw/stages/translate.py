"""Translate stage: one unified-API attempt in the provider's own wire format, and its answer back.

It runs per attempt, after the Router has chosen ``ctx.provider`` and ``ctx.model_override``, so a
route can fall back across formats. There are three cases:
1. Pass-through (``ctx.unified`` is None): nothing to do, unless the format prepares every
   request itself (signing); the plain path costs one attribute check.
2. A unified request to an OpenAI-format provider: the body with the model rewritten, sent to the
   provider's chat endpoint; the answer is already OpenAI's and passes through untouched.
3. A unified request to a translating format (Anthropic, Gemini, ...): the adapter
   (providers/base.py) builds the native request, and this stage sends it with a header block of
   its own (``ctx.upstream_head``: the format's headers and the credential from
   ``credential_for``, nothing of the OpenAI client's). The answer comes back as OpenAI JSON:
   errors keep the provider's status (the Router reads it), a JSON answer is translated whole, a
   stream event by event as it arrives. The usage chunk a client didn't ask for goes to
   ``ctx.hidden_usage`` for the log.

The log keeps the client's body (``ctx.body`` is restored after the attempt). Once a translated
answer is on its way, ``ctx.provider`` becomes the same provider with the OpenAI format: everything
that reads the answer afterwards (the cache's end-of-stream check, the cost meter, the log record,
a mid-stream error event) must see the format the client received, not the one the provider spoke.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable
from typing import Any

from fastgw.context import RequestContext
from fastgw.errors import BadRequest, UpstreamProtocolError
from fastgw.providers.base import Adapter, Call
from fastgw.providers.credentials import credential_for
from fastgw.providers.formats import FORMATS
from fastgw.providers.table import Provider
from fastgw.stages.base import Handler, Response, RewrittenStream
from fastgw.stages.stream_usage import asking_usage, may_ask_usage

# Upstream headers that describe the native body, which the translated body replaces.
_BODY_HEADERS = re.compile(rb"(?im)^(?:content-type|content-encoding|content-length|transfer-encoding):[^\n]*\n")
_ERROR_BODY_LIMIT = 1 << 20  # an error answer longer than this is cut before translating


class Translate:
    def __init__(self, next: Handler) -> None:
        self.next = next
        self._answered: dict[Provider, Provider] = {}  # provider -> itself with the OpenAI format

    def __call__(self, ctx: RequestContext) -> Awaitable[Response]:
        """Pass-through returns the next stage's own coroutine: the hot path pays a call, not a
        coroutine of its own."""
        if ctx.unified is None:
            provider = ctx.provider
            assert provider is not None, "the route stage runs first"
            if provider.format.prepares_passthrough:
                provider.format.prepare_passthrough(ctx, provider)
            return self.next(ctx)
        return self._unified(ctx, ctx.unified)

    async def _unified(self, ctx: RequestContext, chat: dict[str, Any]) -> Response:
        provider = ctx.provider
        assert provider is not None, "the route stage runs first"
        fmt = provider.format
        stream_options = chat.get("stream_options")
        call = Call(provider.name, ctx.model_override or str(chat.get("model", "")), provider.base_path,
                    provider.chat_path, provider.drop_params, stream=chat.get("stream") is True,
                    include_usage=isinstance(stream_options, dict) and stream_options.get("include_usage") is True)
        if not fmt.translates:
            # stages/stream_usage.py asked for usage on the client's behalf; this attempt's
            # provider may be one that refuses stream_options (a fallback).
            if ctx.usage_injected and provider.stream_usage and may_ask_usage(stream_options):
                chat = {**chat, "stream_options": asking_usage(stream_options)}
            _build_request(fmt, chat, call)
            return await self._send(ctx, call, None)
        _build_request(fmt, chat, call)
        head = call.headers + fmt.upstream_auth(call, ctx.method, credential_for(ctx, provider))
        head += b"accept: text/event-stream\r\n" if call.stream else b"accept: application/json\r\n"
        response = await self._send(ctx, call, head)
        translated = await translate_response(fmt, call, response, ctx)
        ctx.provider = self._as_openai(provider)
        return translated

    def _as_openai(self, provider: Provider) -> Provider:
        answered = self._answered.get(provider)
        if answered is None:
            answered = dataclasses.replace(provider, format=FORMATS["openai"])
            if len(self._answered) < 1024:
                self._answered[provider] = answered
        return answered

    async def _send(self, ctx: RequestContext, call: Call, head: bytes | None) -> Response:
        body, path = ctx.body, ctx.upstream_path
        ctx.body, ctx.upstream_path, ctx.upstream_head = call.body, call.path, head
        try:
            return await self.next(ctx)
        finally:
            ctx.body, ctx.upstream_head = body, None  # the log keeps the client's body
            ctx.upstream_path = call.path or path


def _build_request(fmt: Adapter, chat: dict[str, Any], call: Call) -> None:
    """The provider's request from the OpenAI body. A body of the wrong shape (a content part that
    is a bare string, ``stop: 5``) is the client's mistake: a 400, as OpenAI answers, not a 500."""
    try:
        fmt.chat_request(chat, call)
    except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
        raise BadRequest(f"the request body does not have the shape of an OpenAI chat request "
                         f"({type(exc).__name__}: {str(exc)[:200]})", code="invalid_request_body") from None


async def translate_response(fmt: Adapter, call: Call, response: Response, ctx: RequestContext) -> Response:
    status = response.status
    if status < 200 or 300 <= status < 400:
        return response
    headers = _BODY_HEADERS.sub(b"", response.headers)
    if status >= 400:
        raw = await read_all(response, _ERROR_BODY_LIMIT)
        return Response(status, headers + b"content-type: application/json\r\n", body=fmt.error_body(status, raw, call))
    if not call.stream:
        raw = await read_all(response, None)
        try:
            body = fmt.chat_response(raw, call)
        except (ValueError, AttributeError, TypeError, KeyError, IndexError) as exc:
            raise UpstreamProtocolError(f"{call.provider} answered with a body the gateway can't read: {exc}") from None
        return Response(status, headers + b"content-type: application/json\r\n", body=body)
    translator = fmt.chat_stream(call)
    sse = headers + b"content-type: text/event-stream\r\ncache-control: no-cache\r\n"
    if response.stream is None:  # the whole stream had already arrived
        body = translator.feed(response.body or b"") + translator.finish()
        ctx.hidden_usage = translator.usage_event
        return Response(status, sse, body=body)
    return Response(status, sse, stream=RewrittenStream(response.stream, translator, ctx))


async def read_all(response: Response, limit: int | None) -> bytes:
    """A response's whole body (at most ``limit`` bytes), its stream released either way."""
    if response.stream is None:
        return response.body or b""
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in response.stream:  # type: ignore[attr-defined]
            parts.append(chunk)
            size += len(chunk)
            if limit is not None and size >= limit:
                break
    finally:
        response.close()
    return b"".join(parts)
