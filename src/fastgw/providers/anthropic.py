"""Anthropic's Messages API (``POST /v1/messages``), from and back to OpenAI's chat completions.

Choices where the two APIs differ:
- ``max_tokens`` is required by Anthropic; when the client sends neither ``max_tokens`` nor
  ``max_completion_tokens`` the gateway sends ``DEFAULT_MAX_TOKENS`` (4096).
- Anthropic has no JSON mode. ``response_format`` ``json_object`` / ``json_schema`` becomes one
  forced tool whose input schema is the requested schema (``{"type": "object"}`` for
  json_object), Anthropic's documented way to get JSON out; its input comes back as the message
  text, so the client sees JSON content as it would from OpenAI. Combined with ``tools`` it is a 400.
- System and developer messages anywhere in the conversation are joined into ``system``.
- Consecutive tool results become one user turn of ``tool_result`` blocks.
- Usage: Anthropic's ``input_tokens`` leaves out cached tokens, OpenAI's ``prompt_tokens``
  includes them, so prompt_tokens = input + cache_read + cache_creation and
  ``prompt_tokens_details.cached_tokens`` = cache_read.
"""

from __future__ import annotations

from typing import Any

import orjson

from fastgw.providers import chat_shapes as S
from fastgw.providers.anthropic_stream import ERROR_TYPES, FINISH, AnthropicStream
from fastgw.providers.base import Adapter, Call, UnsupportedParameter

DEFAULT_MAX_TOKENS = 4096
API_VERSION = b"2023-06-01"
JSON_TOOL = "json_response"  # the forced tool that carries response_format
SUPPORTED = frozenset({
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "tools", "tool_choice",
    "parallel_tool_calls", "response_format", "n",
})


class AnthropicAdapter(Adapter):
    name = "anthropic"
    auth_header = b"x-api-key"
    auth_prefix = b""
    translates = True

    def chat_request(self, chat: dict[str, Any], call: Call) -> None:
        S.check_params(chat, SUPPORTED, call)
        if chat.get("n") not in (None, 1) and not call.drop_params:
            raise UnsupportedParameter("n", call.provider, "one choice per request")
        system, messages = to_messages(chat.get("messages"), call)
        out: dict[str, Any] = {"model": call.model, "messages": messages}
        if system:
            out["system"] = system
        limit = chat.get("max_completion_tokens") or chat.get("max_tokens")
        out["max_tokens"] = limit if isinstance(limit, int) and limit > 0 else DEFAULT_MAX_TOKENS
        for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p")):
            if chat.get(ours) is not None:
                out[theirs] = chat[ours]
        stop = chat.get("stop")
        if stop:
            out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if chat.get("tools"):
            out["tools"] = [to_tool(t) for t in chat["tools"]]
            choice = to_tool_choice(chat.get("tool_choice"), chat.get("parallel_tool_calls"))
            if choice is not None:
                out["tool_choice"] = choice
        fmt = chat.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
            if chat.get("tools"):
                raise UnsupportedParameter("response_format", call.provider, "JSON output together with tools")
            schema = (fmt.get("json_schema") or {}).get("schema") if fmt["type"] == "json_schema" else None
            out["tools"] = [{"name": JSON_TOOL, "description": "Respond with the JSON answer as this tool's input.",
                             "input_schema": schema or {"type": "object"}}]
            out["tool_choice"] = {"type": "tool", "name": JSON_TOOL}
            call.json_mode = True
        if isinstance(chat.get("user"), str):
            out["metadata"] = {"user_id": chat["user"]}
        if call.stream:
            out["stream"] = True
        call.path = (call.base_path + "/v1/messages").encode()
        call.body = orjson.dumps(out)
        call.headers = b"content-type: application/json\r\nanthropic-version: " + API_VERSION + b"\r\n"

    def chat_response(self, body: bytes, call: Call) -> bytes:
        msg = orjson.loads(body)
        text: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        for block in msg.get("content") or ():
            kind = block.get("type")
            if kind == "text":
                text.append(block.get("text", ""))
            elif kind == "tool_use" and block.get("name") == JSON_TOOL and call.json_mode:
                text.append(orjson.dumps(block.get("input", {})).decode())
            elif kind == "tool_use":
                tool_calls.append({"id": block.get("id"), "type": "function", "function": {
                    "name": block.get("name"), "arguments": orjson.dumps(block.get("input", {})).decode()}})
        finish = FINISH.get(msg.get("stop_reason") or "", "stop")
        if call.json_mode and finish == "tool_calls":
            finish = "stop"
            text = text[-1:]  # the JSON alone: any text the model put before it would spoil it
        content = "".join(text) if text or not tool_calls else None
        return S.completion(call, msg.get("model", ""), content, tool_calls, finish, to_usage(msg.get("usage")))

    def chat_stream(self, call: Call) -> AnthropicStream:
        return AnthropicStream(call, JSON_TOOL if call.json_mode else None)

    def error_body(self, status: int, body: bytes, call: Call) -> bytes:
        return to_error(status, body)


def to_error(status: int, body: bytes) -> bytes:
    try:
        err = orjson.loads(body).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        err = {}
    kind = err.get("type") if isinstance(err, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    if not message:
        message = f"provider answered {status}: {body[:200].decode('utf-8', 'replace')}"
    type_ = ERROR_TYPES.get(kind or "", "server_error" if status >= 500 else "invalid_request_error")
    return S.error_json(message, type_, kind or None)


def to_usage(u: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(u, dict):
        return None
    read = u.get("cache_read_input_tokens") or 0
    written = u.get("cache_creation_input_tokens") or 0
    return S.usage((u.get("input_tokens") or 0) + read + written, u.get("output_tokens") or 0, read)


def to_tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function") or {}
    out = {"name": fn.get("name"), "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def to_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None or choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict):
        out = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    else:
        out = None
    if out is not None and parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    if choice is None and parallel is not False:
        return None  # Anthropic's default is auto too: send nothing
    return out


def to_messages(messages: Any, call: Call) -> tuple[str, list[dict[str, Any]]]:
    """(system text, Anthropic messages with same-role turns merged)."""
    if not isinstance(messages, list) or not messages:
        raise UnsupportedParameter("messages", call.provider, "a non-empty list of messages is required")
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role in ("system", "developer"):
            system.append(S.text_of(m.get("content")))
            continue
        if role == "tool":
            content = m.get("content")
            blocks = [{"type": "tool_result", "tool_use_id": m.get("tool_call_id"),
                       "content": content if isinstance(content, str) else S.text_of(content)}]
            role = "user"
        elif role == "user":
            blocks = to_blocks(m.get("content"), i, call)
        elif role == "assistant":
            blocks = to_blocks(m.get("content"), i, call)
            blocks += [{"type": "tool_use", "id": id_, "name": name, "input": args}
                       for id_, name, args in S.tool_calls(m, i, call)]
        else:
            raise UnsupportedParameter(f"messages[{i}].role", call.provider, f"unknown role {role!r}")
        S.add_turn(out, role, "content", blocks)
    return "\n\n".join(s for s in system if s), out


def to_blocks(content: Any, i: int, call: Call) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            blocks.append({"type": "image", "source": image_source(url)})
        elif not call.drop_params:
            raise UnsupportedParameter(f"messages[{i}].content[{j}].type", call.provider, f"{kind!r} parts")
    return blocks


def image_source(url: str) -> dict[str, Any]:
    """A data URL becomes base64; an http(s) URL is passed as a URL source, which Anthropic fetches."""
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        return {"type": "base64", "media_type": head[5:].split(";")[0], "data": data}
    return {"type": "url", "url": url}


ANTHROPIC = AnthropicAdapter()
