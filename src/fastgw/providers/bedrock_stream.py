"""Bedrock ConverseStream (AWS event-stream frames) translated into OpenAI chunks as they arrive.

Events, in the order Bedrock sends them: ``messageStart`` (the role), per content block
``contentBlockStart`` (only for tool use: its id and name), ``contentBlockDelta`` (text, or a
piece of the tool input's JSON) and ``contentBlockStop``, then ``messageStop`` (the stop reason)
and last ``metadata`` (usage and latency). The finish chunk goes out on ``messageStop``; the usage
chunk and ``[DONE]`` on ``metadata``, or at the end of the stream if it never comes. An exception
message becomes an OpenAI error event; broken framing is an upstream protocol error (the server
ends the SSE stream with it).
"""

from __future__ import annotations

from typing import Any

import orjson

from fastgw.errors import UpstreamProtocolError
from fastgw.providers import chat_shapes as S
from fastgw.providers.base import Call
from fastgw.providers.eventstream import Decoder, EventStreamError, Message

FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
          "guardrail_intervened": "content_filter", "content_filtered": "content_filter"}
# HTTP status -> OpenAI error type
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 408: "timeout", 413: "invalid_request_error", 424: "server_error",
               429: "rate_limit_error"}
# Stream exception (``:exception-type``) -> OpenAI error type
EXCEPTION_TYPES = {"throttlingException": "rate_limit_error", "validationException": "invalid_request_error",
                   "modelStreamErrorException": "server_error", "internalServerException": "server_error",
                   "serviceUnavailableException": "server_error"}


class ConverseStream:
    def __init__(self, call: Call) -> None:
        self.call = call
        self.decoder = Decoder()
        self.tool_index: dict[int, int] = {}  # Converse content block index -> OpenAI tool_calls index
        self.finished = False  # the finish chunk is out
        self.done = False  # [DONE] is out
        self.usage_event = b""

    def feed(self, chunk: bytes) -> bytes:
        try:
            messages = self.decoder.feed(chunk)
        except EventStreamError as exc:
            raise UpstreamProtocolError(f"{self.call.provider} sent a broken event stream: {exc}") from None
        return b"".join(self._message(m) for m in messages)

    def finish(self) -> bytes:
        if self.done:
            return b""
        try:
            self.decoder.close()
        except EventStreamError as exc:
            raise UpstreamProtocolError(f"{self.call.provider} sent a broken event stream: {exc}") from None
        return self._end(None)

    def _message(self, msg: Message) -> bytes:
        if self.done:
            return b""
        try:
            ev: dict[str, Any] = orjson.loads(msg.payload) if msg.payload else {}
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(f"{self.call.provider} sent an event that is not JSON") from None
        kind = msg.event_type
        if msg.is_exception:
            self.done = True
            return S.error_event(ev.get("message") or kind, EXCEPTION_TYPES.get(kind, "server_error"), kind or None)
        call = self.call
        if kind == "messageStart":
            return S.chunk(call, "", {"role": ev.get("role") or "assistant", "content": ""})
        if kind == "contentBlockStart":
            use = (ev.get("start") or {}).get("toolUse")
            if not use:
                return b""
            n = self.tool_index[ev.get("contentBlockIndex", 0)] = len(self.tool_index)
            return S.chunk(call, "", {"tool_calls": [{"index": n, "id": use.get("toolUseId"), "type": "function",
                                                      "function": {"name": use.get("name"), "arguments": ""}}]})
        if kind == "contentBlockDelta":
            delta = ev.get("delta") or {}
            if "text" in delta:
                return S.chunk(call, "", {"content": delta["text"]})
            use = delta.get("toolUse")
            index = self.tool_index.get(ev.get("contentBlockIndex", 0))
            if use is not None and index is not None:
                return S.chunk(call, "", {"tool_calls": [{"index": index, "function": {"arguments": use.get("input", "")}}]})
            return b""  # reasoning content has no chat-completions equivalent
        if kind == "messageStop":
            self.finished = True
            return S.chunk(call, "", {}, FINISH.get(ev.get("stopReason") or "", "stop"))
        if kind == "metadata":
            return self._end(ev.get("usage"))
        return b""  # contentBlockStop, and events added after this was written

    def _end(self, usage: Any) -> bytes:
        self.done = True
        out = b"" if self.finished else S.chunk(self.call, "", {}, "stop")
        usage_obj = to_usage(usage)
        if usage_obj is not None:
            event = S.usage_chunk(self.call, "", usage_obj)
            if self.call.include_usage:
                out += event
            else:
                self.usage_event = event
        return out + S.DONE


def to_usage(u: Any) -> dict[str, Any] | None:
    """Converse usage as OpenAI's: ``inputTokens`` leaves out cache reads and writes, which
    OpenAI's ``prompt_tokens`` includes."""
    if not isinstance(u, dict):
        return None
    read = u.get("cacheReadInputTokens") or 0
    written = u.get("cacheWriteInputTokens") or 0
    return S.usage((u.get("inputTokens") or 0) + read + written, u.get("outputTokens") or 0, read)
