"""The Gemini adapter's pure mappings, and the SSE parser the translated streams share."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from fastgw.providers.base import Call, UnsupportedParameter
from fastgw.providers.gemini import GEMINI
from fastgw.providers.sse_events import SSEParser


def call(**kw: Any) -> Call:
    return Call("gemini", "gemini-2.5-flash", "", **kw)


def request(chat: dict[str, Any], **kw: Any) -> tuple[Call, dict[str, Any]]:
    c = call(**kw)
    GEMINI.chat_request({"model": "gemini/gemini-2.5-flash", **chat}, c)
    return c, orjson.loads(c.body)


def test_paths_and_generation_config() -> None:
    c, body = request({"messages": [{"role": "user", "content": "x"}], "temperature": 0.1, "top_p": 0.5,
                       "seed": 4, "presence_penalty": 0.2, "max_completion_tokens": 9, "stop": ["a", "b"]})
    assert c.path == b"/v1beta/models/gemini-2.5-flash:generateContent"
    assert body["generationConfig"] == {"temperature": 0.1, "topP": 0.5, "seed": 4, "presencePenalty": 0.2,
                                        "maxOutputTokens": 9, "stopSequences": ["a", "b"]}
    c, _ = request({"messages": [{"role": "user", "content": "x"}]}, stream=True)
    assert c.path == b"/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"


def test_roles_and_tool_results() -> None:
    _, body = request({"messages": [
        {"role": "system", "content": "S"}, {"role": "user", "content": "x"},
        {"role": "assistant", "content": "let me", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "plain text"}]})
    assert body["systemInstruction"] == {"parts": [{"text": "S"}]}
    assert body["contents"][1] == {"role": "model", "parts": [{"text": "let me"},
                                                              {"functionCall": {"name": "f", "args": {"a": 1}}}]}
    assert body["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "f", "response": {"result": "plain text"}}}]}


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", None), ("none", {"functionCallingConfig": {"mode": "NONE"}}),
    ("required", {"functionCallingConfig": {"mode": "ANY"}}),
    ({"type": "function", "function": {"name": "f"}},
     {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}),
])
def test_tool_config(choice: Any, expected: Any) -> None:
    _, body = request({"messages": [{"role": "user", "content": "x"}], "tool_choice": choice,
                       "tools": [{"type": "function", "function": {"name": "f"}}]})
    assert body.get("toolConfig") == expected and body["tools"] == [{"functionDeclarations": [{"name": "f"}]}]


def test_json_object() -> None:
    _, body = request({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}})
    assert body["generationConfig"] == {"responseMimeType": "application/json"}


@pytest.mark.parametrize(("chat", "param"), [
    ({"logprobs": True}, "logprobs"), ({"n": 3}, "n"), ({"logit_bias": {"1": 2}}, "logit_bias"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]},
     "messages[0].content[0]"),
])
def test_unsupported(chat: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as info:
        request({"messages": [{"role": "user", "content": "x"}], **chat})
    assert info.value.param == param


def answer(parts: list[Any], finish: str = "STOP", **usage: int) -> bytes:
    return orjson.dumps({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish}],
                         "usageMetadata": usage, "modelVersion": "gemini-2.5-flash-001"})


@pytest.mark.parametrize(("finish", "expected"), [("STOP", "stop"), ("MAX_TOKENS", "length"),
                                                  ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
                                                  ("OTHER", "stop")])
def test_finish_reasons(finish: str, expected: str) -> None:
    out = json.loads(GEMINI.chat_response(answer([{"text": "hi"}], finish), call()))
    assert out["choices"][0]["finish_reason"] == expected


def test_usage_with_thoughts_and_cache_and_thought_parts_hidden() -> None:
    body = answer([{"text": "thinking...", "thought": True}, {"text": "hi"}], promptTokenCount=10,
                  candidatesTokenCount=4, thoughtsTokenCount=6, cachedContentTokenCount=8)
    out = json.loads(GEMINI.chat_response(body, call()))
    assert out["choices"][0]["message"]["content"] == "hi" and out["model"] == "gemini-2.5-flash-001"
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20,
                            "prompt_tokens_details": {"cached_tokens": 8},
                            "completion_tokens_details": {"reasoning_tokens": 6}}


def test_function_call_answer() -> None:
    out = json.loads(GEMINI.chat_response(answer([{"functionCall": {"name": "f", "args": {"a": 1}}}]), call()))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    tc = choice["message"]["tool_calls"][0]
    assert tc["id"].startswith("call_") and tc["function"] == {"name": "f", "arguments": '{"a":1}'}


def test_stream_events_split_anywhere() -> None:
    events = [{"candidates": [{"content": {"role": "model", "parts": [{"text": t}]}}], "modelVersion": "g"}
              for t in ("Hel", "lo")]
    events.append({"candidates": [{"content": {"role": "model", "parts": [{"text": "!"}]}, "finishReason": "STOP"}],
                   "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 3}, "modelVersion": "g"})
    raw = b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)
    t = GEMINI.chat_stream(call(stream=True))
    out = b"".join(t.feed(raw[i:i + 5]) for i in range(0, len(raw), 5)) + t.finish()
    parsed = [json.loads(e[6:]) for e in out.split(b"\n\n") if e and e != b"data: [DONE]"]
    assert "".join(p["choices"][0]["delta"].get("content", "") for p in parsed) == "Hello!"
    assert parsed[-1]["choices"][0]["finish_reason"] == "stop" and out.endswith(b"data: [DONE]\n\n")
    assert json.loads(t.usage_event[6:])["usage"]["total_tokens"] == 6


def test_stream_error_event() -> None:
    t = GEMINI.chat_stream(call(stream=True))
    out = t.feed(b'data: {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}\n\n')
    assert json.loads(out[6:])["error"] == {"message": "quota", "type": "rate_limit_error", "param": None,
                                            "code": "RESOURCE_EXHAUSTED"}


@pytest.mark.parametrize(("status", "body", "type_"), [
    (400, b'{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}', "invalid_request_error"),
    (403, b'[{"error": {"code": 403, "message": "no", "status": "PERMISSION_DENIED"}}]', "permission_error"),
    (503, b"overloaded", "server_error"),
])
def test_errors(status: int, body: bytes, type_: str) -> None:
    assert json.loads(GEMINI.error_body(status, body, call()))["error"]["type"] == type_


def test_sse_parser() -> None:
    p = SSEParser()
    assert p.feed(b": keep-alive\n\nevent: a\ndata: 1\ndata:2\n") == []
    assert p.feed(b"\nevent: b\r\ndata: {}\r\n\r\n") == [("a", b"1\n2"), ("b", b"{}")]
    assert p.feed(b"data: tail") == [] and p.finish() == [("", b"tail")]
