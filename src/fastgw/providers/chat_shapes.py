"""OpenAI's answer shapes, built once here for every translating format.

The translated answer must be what the OpenAI SDK parses and what the exporter prices
(requestlog/usage.py reads OpenAI's ``usage``), so every format writes through these helpers.
"""

from __future__ import annotations

from typing import Any

import orjson

from fastgw.providers.base import Call, UnsupportedParameter


def usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    """OpenAI's usage object; ``prompt`` already includes ``cached`` (OpenAI's convention)."""
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion,
                           "prompt_tokens_details": {"cached_tokens": cached}}
    if reasoning:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def completion(call: Call, model: str, content: str | None, tool_calls: list[dict[str, Any]],
               finish_reason: str, usage_obj: dict[str, Any] | None) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    out: dict[str, Any] = {
        "id": call.id, "object": "chat.completion", "created": call.created, "model": model or call.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage_obj is not None:
        out["usage"] = usage_obj
    return orjson.dumps(out)


def chunk(call: Call, model: str, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    """One ``chat.completion.chunk`` as an SSE event."""
    body = {"id": call.id, "object": "chat.completion.chunk", "created": call.created, "model": model or call.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def usage_chunk(call: Call, model: str, usage_obj: dict[str, Any]) -> bytes:
    """The last chunk of a stream whose client asked for ``stream_options.include_usage``."""
    body = {"id": call.id, "object": "chat.completion.chunk", "created": call.created, "model": model or call.model,
            "choices": [], "usage": usage_obj}
    return b"data: " + orjson.dumps(body) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def error_json(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def error_event(message: str, type_: str, code: str | None) -> bytes:
    """An error that arrives mid-stream, as the OpenAI SDK raises it (a data object with ``error``)."""
    return b"data: " + error_json(message, type_, code) + b"\n\n"


def text_of(content: Any) -> str:
    """The text of an OpenAI message content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


# OpenAI chat parameters that change nothing a provider computes, so they are never refused.
HARMLESS = frozenset({"model", "messages", "stream", "stream_options", "user", "store", "metadata", "service_tier"})


def check_params(chat: dict[str, Any], supported: frozenset[str], call: Call) -> None:
    """400 for the first parameter outside ``supported`` (a null value counts as absent), unless
    ``call.drop_params``: then it is left out of the native request, which never reads it."""
    if call.drop_params:
        return
    for key, value in chat.items():
        if value is not None and key not in supported and key not in HARMLESS:
            raise UnsupportedParameter(key, call.provider)


def tool_calls(message: dict[str, Any], i: int, call: Call) -> list[tuple[Any, Any, Any]]:
    """An assistant message's tool calls as (id, function name, parsed arguments); a 400 naming the
    message when arguments are not JSON (every native format wants them as an object)."""
    out = []
    for tc in message.get("tool_calls") or ():
        fn = tc.get("function") or {}
        try:
            args = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            raise UnsupportedParameter(f"messages[{i}].tool_calls", call.provider, "arguments must be JSON") from None
        out.append((tc.get("id"), fn.get("name"), args))
    return out


def add_turn(turns: list[dict[str, Any]], role: str, field: str, items: list[dict[str, Any]]) -> None:
    """Append a turn, merged into the previous one when it has the same role (the native APIs want
    user and assistant turns to alternate)."""
    if turns and turns[-1]["role"] == role:
        turns[-1][field].extend(items)
    else:
        turns.append({"role": role, field: items})
