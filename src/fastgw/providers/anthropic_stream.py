"""Anthropic's Messages SSE, translated event by event into OpenAI ``chat.completion.chunk`` events.

Each Anthropic event is answered as soon as it is complete: text deltas become content deltas,
a ``tool_use`` block start becomes a tool call (id and name) and its ``input_json_delta`` pieces
become argument deltas, ``message_delta`` carries the finish reason and the output tokens, and
``message_stop`` ends the stream with ``data: [DONE]``. The usage chunk goes to the client only if
it asked (``stream_options.include_usage``); otherwise it is kept in ``usage_event`` for the log.
"""

from __future__ import annotations

from typing import Any

import orjson

from fastgw.providers import chat_shapes as S
from fastgw.providers.base import Call
from fastgw.providers.sse_events import SSEParser

FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
          "refusal": "content_filter", "pause_turn": "stop"}
# Anthropic error type -> OpenAI error type
ERROR_TYPES = {
    "invalid_request_error": "invalid_request_error", "request_too_large": "invalid_request_error",
    "authentication_error": "authentication_error", "permission_error": "permission_error",
    "not_found_error": "not_found_error", "rate_limit_error": "rate_limit_error",
    "api_error": "server_error", "overloaded_error": "server_error",
}


class AnthropicStream:
    def __init__(self, call: Call, json_tool: str | None) -> None:
        self.call = call
        self.json_tool = json_tool  # response_format emulated by a forced tool: its input is the text
        self.parser = SSEParser()
        self.model = ""
        self.usage: dict[str, int] = {}
        self.tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index
        self.json_blocks: set[int] = set()
        self.reason: str | None = None
        self.done = False
        self.usage_event = b""

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._event(name, data) for name, data in self.parser.feed(chunk))

    def finish(self) -> bytes:
        out = b"".join(self._event(name, data) for name, data in self.parser.finish())
        if not self.done:  # the upstream ended without message_stop: close what we can
            out += self._end()
        return out

    def _event(self, name: str, data: bytes) -> bytes:
        if self.done or not data:
            return b""
        try:
            ev: dict[str, Any] = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        kind = ev.get("type") or name
        call = self.call
        if kind == "message_start":
            msg = ev.get("message") or {}
            self.model = msg.get("model") or ""
            self._add_usage(msg.get("usage"))
            return S.chunk(call, self.model, {"role": "assistant", "content": ""})
        if kind == "content_block_start":
            block = ev.get("content_block") or {}
            index = ev.get("index", 0)
            if block.get("type") == "tool_use":
                if block.get("name") == self.json_tool:
                    self.json_blocks.add(index)
                    return b""
                n = self.tool_index[index] = len(self.tool_index)
                return S.chunk(call, self.model, {"tool_calls": [{"index": n, "id": block.get("id"), "type": "function",
                                                                  "function": {"name": block.get("name"), "arguments": ""}}]})
            if block.get("type") == "text" and block.get("text") and self.json_tool is None:
                return S.chunk(call, self.model, {"content": block["text"]})
            return b""
        if kind == "content_block_delta":
            delta = ev.get("delta") or {}
            index = ev.get("index", 0)
            if delta.get("type") == "text_delta":
                if self.json_tool is not None:
                    return b""  # JSON mode: only the forced tool's input is the answer
                return S.chunk(call, self.model, {"content": delta.get("text", "")})
            if delta.get("type") == "input_json_delta":
                piece = delta.get("partial_json", "")
                if index in self.json_blocks:
                    return S.chunk(call, self.model, {"content": piece}) if piece else b""
                if index in self.tool_index:
                    return S.chunk(call, self.model, {"tool_calls": [{"index": self.tool_index[index],
                                                                      "function": {"arguments": piece}}]})
            return b""  # thinking and signature deltas have no chat-completions equivalent
        if kind == "message_delta":
            reason = (ev.get("delta") or {}).get("stop_reason")
            if reason:
                self.reason = FINISH.get(reason, "stop")
                if self.json_blocks and self.reason == "tool_calls":
                    self.reason = "stop"
            self._add_usage(ev.get("usage"))
            return b""
        if kind == "message_stop":
            return self._end()
        if kind == "error":
            err = ev.get("error") or {}
            self.done = True
            return S.error_event(err.get("message", "provider error"), ERROR_TYPES.get(err.get("type", ""), "server_error"),
                                 err.get("type"))
        return b""  # ping

    def _add_usage(self, u: Any) -> None:
        if isinstance(u, dict):
            for key, value in u.items():
                if isinstance(value, int):
                    self.usage[key] = value  # message_delta's counts are cumulative

    def _end(self) -> bytes:
        self.done = True
        out = S.chunk(self.call, self.model, {}, self.reason or "stop")
        u = self.usage
        if u:
            read, written = u.get("cache_read_input_tokens", 0), u.get("cache_creation_input_tokens", 0)
            event = S.usage_chunk(self.call, self.model,
                                  S.usage(u.get("input_tokens", 0) + read + written, u.get("output_tokens", 0), read))
            if self.call.include_usage:
                out += event
            else:
                self.usage_event = event
        return out + S.DONE
