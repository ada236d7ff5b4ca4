"""Provider-shaped bodies for the mock upstream (OpenAI and Anthropic wire formats).

Kept apart from the server so the HTTP machinery stays small and so that the
exact JSON the official SDKs parse lives in one place. Every function here is
pure: same inputs, same bytes, which makes usage numbers and embeddings
deterministic for tests. The field sets follow the models of the installed
``openai`` / ``anthropic`` SDKs (including fields they declare as required even
though they mostly construct without validation).

Token accounting, shared by every endpoint and by streamed and plain modes:
``prompt_tokens = max(1, len(request_body) // 4)`` and
``completion_tokens = number of content pieces``.
"""

from __future__ import annotations

import base64
import struct
import zlib
from functools import lru_cache
from typing import Any

import orjson

_dumps = orjson.dumps

WORDS = ("Hello", " from", " the", " mock", " upstream", ",", " a", " fast", " fake", " model", ".")
_FILLER = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "


def prompt_tokens(body: bytes) -> int:
    """Deterministic stand-in for a tokenizer: a quarter of the body length."""
    return max(1, len(body) // 4)


@lru_cache(maxsize=256)
def content_pieces(n: int, size: int = 0) -> tuple[str, ...]:
    """The answer split into ``n`` pieces; ``size`` > 0 makes each piece exactly that many ASCII bytes.

    Cached because a benchmark asks for the same few shapes millions of times.
    """
    if size <= 0:
        return tuple(WORDS[i % len(WORDS)] for i in range(n))
    piece = (_FILLER * (size // len(_FILLER) + 1))[:size]
    return (piece,) * n


def sse_data(obj: Any) -> bytes:
    """An OpenAI-style SSE event (data line only)."""
    return b"data: " + _dumps(obj) + b"\n\n"


def sse_named(name: bytes, obj: Any) -> bytes:
    """An SSE event with an ``event:`` line, as Anthropic and the Responses API send them."""
    return b"event: " + name + b"\ndata: " + _dumps(obj) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


# --------------------------------------------------------------------- OpenAI chat


def _chat_usage(ptok: int, ctok: int) -> dict:
    return {
        "prompt_tokens": ptok,
        "completion_tokens": ctok,
        "total_tokens": ptok + ctok,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_completion(cid: str, created: int, model: str, pieces: tuple[str, ...], ptok: int) -> dict:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(pieces), "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _chat_usage(ptok, len(pieces)),
        "service_tier": "default",
        "system_fingerprint": "fp_mock",
    }


def chat_stream(
    cid: str, created: int, model: str, pieces: tuple[str, ...], ptok: int, include_usage: bool
) -> list[bytes]:
    """chat.completion.chunk events: role chunk, one chunk per piece, finish chunk, [usage chunk], [DONE]."""
    head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "service_tier": "default", "system_fingerprint": "fp_mock"}
    if include_usage:  # the real API sends "usage": null on every chunk but the last in this mode
        head["usage"] = None

    def chunk(delta: dict, finish: str | None) -> bytes:
        return sse_data({**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    events = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
    events.extend(chunk({"content": p}, None) for p in pieces)
    events.append(chunk({}, "stop"))
    if include_usage:
        events.append(sse_data({**head, "choices": [], "usage": _chat_usage(ptok, len(pieces))}))
    events.append(SSE_DONE)
    return events


# --------------------------------------------------------------------- OpenAI embeddings


@lru_cache(maxsize=4096)
def embedding_vector(seed: int, dims: int) -> tuple[float, ...]:
    """Values k/16 - 0.5: exactly representable in float32, so base64 and float modes agree bit for bit."""
    x = seed or 1
    out = []
    for _ in range(dims):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(((x >> 16) & 0xF) / 16 - 0.5)
    return tuple(out)


def embedding_inputs(inp: Any) -> list[Any]:
    """``input`` may be a string, a list of strings, one token array, or a list of token arrays."""
    if isinstance(inp, str):
        return [inp]
    if isinstance(inp, list):
        if inp and isinstance(inp[0], int):
            return [inp]
        return inp
    return []


def embeddings(model: str, inputs: list[Any], dims: int, b64: bool, ptok: int) -> dict:
    data = []
    for i, item in enumerate(inputs):
        key = item.encode() if isinstance(item, str) else _dumps(item)
        vec = embedding_vector(zlib.crc32(key), dims)
        emb: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if b64 else list(vec)
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": ptok, "total_tokens": ptok}}


# --------------------------------------------------------------------- OpenAI responses


def _text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(mid: str, text: str | None) -> dict:
    """The assistant output item; ``text=None`` is the empty in-progress shape sent at output_item.added."""
    done = text is not None
    return {"id": mid, "type": "message", "status": "completed" if done else "in_progress",
            "role": "assistant", "content": [_text_part(text)] if done else []}


def response_object(rid: str, mid: str, created: int, model: str, text: str | None, ptok: int, ctok: int) -> dict:
    """A Response; ``text=None`` gives the in-progress snapshot sent at response.created."""
    done = text is not None
    return {
        "id": rid, "object": "response", "created_at": created,
        "status": "completed" if done else "in_progress", "completed_at": created if done else None,
        "background": False, "error": None, "incomplete_details": None, "instructions": None,
        "max_output_tokens": None, "max_tool_calls": None, "model": model,
        "output": [_message_item(mid, text)] if done else [],
        "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "service_tier": "default", "store": True,
        "temperature": 1.0, "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto", "tools": [], "top_logprobs": 0, "top_p": 1.0, "truncation": "disabled",
        "usage": {
            "input_tokens": ptok,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": ctok,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": ptok + ctok,
        } if done else None,
        "user": None, "metadata": {},
    }


def responses_stream(rid: str, mid: str, created: int, model: str, pieces: tuple[str, ...], ptok: int) -> list[bytes]:
    """The Responses API event sequence for one text message, with increasing sequence_number."""
    text = "".join(pieces)
    seq = iter(range(1 << 62))

    def ev(kind: str, **fields: Any) -> bytes:
        return sse_named(kind.encode(), {"type": kind, "sequence_number": next(seq), **fields})

    loc = {"item_id": mid, "output_index": 0, "content_index": 0}
    pending = response_object(rid, mid, created, model, None, ptok, 0)
    events = [
        ev("response.created", response=pending),
        ev("response.in_progress", response=pending),
        ev("response.output_item.added", output_index=0, item=_message_item(mid, None)),
        ev("response.content_part.added", **loc, part=_text_part("")),
    ]
    events.extend(ev("response.output_text.delta", **loc, delta=p, logprobs=[]) for p in pieces)
    events += [
        ev("response.output_text.done", **loc, text=text, logprobs=[]),
        ev("response.content_part.done", **loc, part=_text_part(text)),
        ev("response.output_item.done", output_index=0, item=_message_item(mid, text)),
        ev("response.completed", response=response_object(rid, mid, created, model, text, ptok, len(pieces))),
    ]
    return events


# --------------------------------------------------------------------- Anthropic messages


def _anthropic_usage(ptok: int, ctok: int) -> dict:
    return {"input_tokens": ptok, "output_tokens": ctok, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "service_tier": "standard"}


def _message(mid: str, model: str, content: list, stop: str | None, usage: dict) -> dict:
    return {"id": mid, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop, "stop_sequence": None, "usage": usage}


def anthropic_message(mid: str, model: str, pieces: tuple[str, ...], ptok: int) -> dict:
    return _message(mid, model, [{"type": "text", "text": "".join(pieces)}], "end_turn",
                    _anthropic_usage(ptok, len(pieces)))


def anthropic_stream(mid: str, model: str, pieces: tuple[str, ...], ptok: int) -> list[bytes]:
    """message_start, content_block_start, ping, text deltas, content_block_stop, message_delta, message_stop."""
    events = [
        sse_named(b"message_start", {"type": "message_start",
                                     "message": _message(mid, model, [], None, _anthropic_usage(ptok, 1))}),
        sse_named(b"content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}}),
        sse_named(b"ping", {"type": "ping"}),
    ]
    events.extend(
        sse_named(b"content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": p}})
        for p in pieces
    )
    events += [
        sse_named(b"content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse_named(b"message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                     "usage": {"output_tokens": len(pieces)}}),
        sse_named(b"message_stop", {"type": "message_stop"}),
    ]
    return events


# --------------------------------------------------------------------- model lists

MODEL_IDS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "claude-sonnet-4-6", "claude-haiku-4-5")

OPENAI_MODELS = _dumps({"object": "list", "data": [
    {"id": m, "object": "model", "created": 1700000000, "owned_by": "mock"} for m in MODEL_IDS]})

ANTHROPIC_MODELS = _dumps({
    "data": [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
             for m in MODEL_IDS if m.startswith("claude")],
    "has_more": False, "first_id": "claude-sonnet-4-6", "last_id": "claude-haiku-4-5"})


# --------------------------------------------------------------------- errors

# status -> (type, code) as the real OpenAI API reports them
_OPENAI_ERRORS = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    409: ("invalid_request_error", "conflict"),
    422: ("invalid_request_error", "unprocessable_entity"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", "server_error"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}

_ANTHROPIC_ERRORS = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 504: "timeout_error", 529: "overloaded_error",
}


def openai_error(status: int, message: str) -> bytes:
    etype, code = _OPENAI_ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error",
                                              f"http_{status}"))
    return _dumps({"error": {"message": message, "type": etype, "param": None, "code": code}})


def anthropic_error(status: int, message: str) -> bytes:
    etype = _ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return _dumps({"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_mock"})


# --------------------------------------------------------------------- tool calls (Anthropic, Gemini)

def sample_args(schema: Any) -> dict:
    """Arguments that fit a tool's JSON Schema: a sample value for each property, by type."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    samples = {"string": "Paris", "integer": 3, "number": 1.5, "boolean": True, "array": [], "object": {}}
    return {k: samples.get(v.get("type") if isinstance(v, dict) else "", "x") for k, v in (props or {}).items()}


def anthropic_forced_tool(data: dict) -> dict | None:
    """The tool an Anthropic request forces (tool_choice any/tool), or None: answer with text."""
    choice, tools = data.get("tool_choice") or {}, data.get("tools") or []
    if not tools or choice.get("type") not in ("any", "tool"):
        return None
    named = [t for t in tools if t.get("name") == choice.get("name")]
    return (named or tools)[0]


def anthropic_tool_message(mid: str, model: str, tool: dict, ptok: int) -> dict:
    block = {"type": "tool_use", "id": f"toolu_mock{mid[8:]}", "name": tool["name"],
             "input": sample_args(tool.get("input_schema"))}
    return _message(mid, model, [block], "tool_use", _anthropic_usage(ptok, 12))


def anthropic_tool_stream(mid: str, model: str, tool: dict, ptok: int) -> list[bytes]:
    """A tool_use block whose input arrives as input_json_delta pieces. A forced tool gets no text
    block first (Anthropic prefills the turn), so there is none here either."""
    args = _dumps(sample_args(tool.get("input_schema"))).decode()
    cut = len(args) // 2
    return [
        sse_named(b"message_start", {"type": "message_start",
                                     "message": _message(mid, model, [], None, _anthropic_usage(ptok, 1))}),
        sse_named(b"content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": f"toolu_mock{mid[8:]}", "name": tool["name"], "input": {}}}),
        sse_named(b"content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "input_json_delta", "partial_json": args[:cut]}}),
        sse_named(b"content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "input_json_delta", "partial_json": args[cut:]}}),
        sse_named(b"content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse_named(b"message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                     "usage": {"output_tokens": 12}}),
        sse_named(b"message_stop", {"type": "message_stop"}),
    ]


# --------------------------------------------------------------------- Gemini (generateContent)

def _gemini_usage(ptok: int, ctok: int) -> dict:
    return {"promptTokenCount": ptok, "candidatesTokenCount": ctok, "totalTokenCount": ptok + ctok}


def gemini_forced_tool(data: dict) -> dict | None:
    mode = ((data.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
    decls = [d for t in data.get("tools") or [] for d in t.get("functionDeclarations") or []]
    return decls[0] if decls and mode == "ANY" else None


def gemini_response(model: str, parts: list[dict], ptok: int, ctok: int, finish: str | None = "STOP") -> dict:
    cand: dict = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    return {"candidates": [cand], "usageMetadata": _gemini_usage(ptok, ctok), "modelVersion": model,
            "responseId": "mockresp"}


def gemini_parts(data: dict, pieces: tuple[str, ...]) -> list[dict]:
    tool = gemini_forced_tool(data)
    if tool is not None:
        return [{"functionCall": {"name": tool["name"], "args": sample_args(tool.get("parametersJsonSchema"))}}]
    config = data.get("generationConfig") or {}
    if config.get("responseMimeType") == "application/json":
        return [{"text": _dumps(sample_args(config.get("responseJsonSchema"))).decode()}]
    return [{"text": "".join(pieces)}]


def gemini_stream(model: str, data: dict, pieces: tuple[str, ...], ptok: int) -> list[bytes]:
    """One GenerateContentResponse per text piece, the last with finishReason; a function call or
    JSON answer arrives whole in one event, as Gemini sends them."""
    config = data.get("generationConfig") or {}
    if not pieces or gemini_forced_tool(data) is not None or config.get("responseMimeType") == "application/json":
        return [sse_data(gemini_response(model, gemini_parts(data, pieces), ptok, 5))]
    events = [sse_data(gemini_response(model, [{"text": p}], ptok, i + 1, None)) for i, p in enumerate(pieces[:-1])]
    events.append(sse_data(gemini_response(model, [{"text": pieces[-1]}], ptok, len(pieces))))
    return events


_GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                  429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def gemini_error(status: int, message: str) -> bytes:
    return _dumps({"error": {"code": status, "message": message, "status": _GEMINI_STATUS.get(status, "UNKNOWN")}})
