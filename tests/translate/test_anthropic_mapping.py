"""The Anthropic adapter's pure mappings: OpenAI chat -> Messages, and the answer, stream and errors back."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from fastgw.providers.anthropic import ANTHROPIC, DEFAULT_MAX_TOKENS
from fastgw.providers.base import Call, UnsupportedParameter


def call(**kw: Any) -> Call:
    return Call("anthropic", "claude-sonnet-4-5", "", **kw)


def request(chat: dict[str, Any], **kw: Any) -> dict[str, Any]:
    c = call(**kw)
    ANTHROPIC.chat_request({"model": "anthropic/claude-sonnet-4-5", **chat}, c)
    assert c.path == b"/v1/messages"
    return orjson.loads(c.body)


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in events)


def chunks(out: bytes) -> list[Any]:
    events = [e for e in out.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    return [json.loads(e[6:]) for e in events[:-1]]


def test_system_developer_and_turns() -> None:
    body = request({"messages": [
        {"role": "system", "content": "A."}, {"role": "developer", "content": [{"type": "text", "text": "B."}]},
        {"role": "user", "content": "one"}, {"role": "user", "content": "two"},
        {"role": "assistant", "content": "ok"}, {"role": "user", "content": "three"}], "user": "u-1"})
    assert body["system"] == "A.\n\nB."
    assert body["messages"][0] == {"role": "user", "content": [{"type": "text", "text": "one"},
                                                               {"type": "text", "text": "two"}]}
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS and body["metadata"] == {"user_id": "u-1"}


def test_max_completion_tokens_wins_and_stop_string() -> None:
    body = request({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 7, "stop": "Z"})
    assert body["max_tokens"] == 7 and body["stop_sequences"] == ["Z"]


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    (None, None, None),
    ("required", None, {"type": "any"}),
    ("none", None, {"type": "none"}),
    ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
])
def test_tool_choice(choice: Any, parallel: Any, expected: Any) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    body = request({"messages": [{"role": "user", "content": "x"}], "tools": [tool], "tool_choice": choice,
                    "parallel_tool_calls": parallel})
    assert body.get("tool_choice") == expected
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object"}}]


def test_consecutive_tool_results_share_one_user_turn() -> None:
    body = request({"messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "b", "type": "function", "function": {"name": "g", "arguments": '{"k": 1}'}}]},
        {"role": "tool", "tool_call_id": "a", "content": "1"},
        {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "2"}]}]})
    assert body["messages"][1]["content"] == [{"type": "tool_use", "id": "a", "name": "f", "input": {}},
                                              {"type": "tool_use", "id": "b", "name": "g", "input": {"k": 1}}]
    assert body["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "a", "content": "1"},
        {"type": "tool_result", "tool_use_id": "b", "content": "2"}]}


@pytest.mark.parametrize(("chat", "param"), [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"frequency_penalty": 0.1}, "frequency_penalty"),
    ({"seed": 1}, "seed"),
    ({"response_format": {"type": "json_object"}, "tools": [{"type": "function", "function": {"name": "f"}}]},
     "response_format"),
    ({"messages": [{"role": "critic", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0].type"),
    ({"messages": []}, "messages"),
])
def test_unsupported_is_a_400_naming_the_parameter(chat: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as info:
        request({"messages": [{"role": "user", "content": "x"}], **chat})
    assert info.value.status == 400 and info.value.param == param
    assert json.loads(info.value.body())["error"]["param"] == param


def test_drop_params_drops() -> None:
    body = request({"messages": [{"role": "user", "content": "x"}], "logprobs": True, "seed": 3}, drop_params=True)
    assert "logprobs" not in body and "seed" not in body


def test_null_parameters_count_as_absent() -> None:
    request({"messages": [{"role": "user", "content": "x"}], "logprobs": None, "seed": None})


def test_json_object_becomes_a_forced_tool() -> None:
    c = call()
    ANTHROPIC.chat_request({"messages": [{"role": "user", "content": "x"}],
                            "response_format": {"type": "json_object"}}, c)
    body = orjson.loads(c.body)
    assert c.json_mode and body["tools"][0]["input_schema"] == {"type": "object"}
    answer = {"model": "claude-x", "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 2},
              "content": [{"type": "tool_use", "id": "t", "name": "json_response", "input": {"a": 1}}]}
    out = json.loads(ANTHROPIC.chat_response(orjson.dumps(answer), c))
    assert out["choices"][0]["message"]["content"] == '{"a":1}' and out["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(("stop", "finish"), [("end_turn", "stop"), ("stop_sequence", "stop"),
                                              ("max_tokens", "length"), ("tool_use", "tool_calls"),
                                              ("refusal", "content_filter")])
def test_finish_reasons(stop: str, finish: str) -> None:
    answer = {"model": "m", "stop_reason": stop, "content": [{"type": "text", "text": "hi"}], "usage": {}}
    assert json.loads(ANTHROPIC.chat_response(orjson.dumps(answer), call()))["choices"][0]["finish_reason"] == finish


def test_usage_counts_cache_tokens_as_prompt_tokens() -> None:
    answer = {"model": "claude-sonnet-4-5-20250929", "stop_reason": "end_turn", "content": [],
              "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100,
                        "cache_creation_input_tokens": 20}}
    out = json.loads(ANTHROPIC.chat_response(orjson.dumps(answer), call()))
    assert out["usage"] == {"prompt_tokens": 130, "completion_tokens": 5, "total_tokens": 135,
                            "prompt_tokens_details": {"cached_tokens": 100}}
    assert out["model"] == "claude-sonnet-4-5-20250929" and out["object"] == "chat.completion"
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "", "refusal": None}


START = {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "content": [],
                                              "usage": {"input_tokens": 9, "output_tokens": 1,
                                                        "cache_read_input_tokens": 3}}}
TEXT_THEN_TOOL = sse(
    START,
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f",
                                                                  "input": {}}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"ci'}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": 'ty": "P"}'}},
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}},
    {"type": "message_stop"},
)


def test_stream_text_then_tool_call() -> None:
    t = ANTHROPIC.chat_stream(call(stream=True))
    out = chunks(t.feed(TEXT_THEN_TOOL) + t.finish())
    deltas = [c["choices"][0]["delta"] for c in out]
    assert deltas[0] == {"role": "assistant", "content": ""} and deltas[1] == {"content": "Checking"}
    assert deltas[2] == {"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function",
                                         "function": {"name": "f", "arguments": ""}}]}
    assert [d["tool_calls"][0]["function"]["arguments"] for d in deltas[3:5]] == ['{"ci', 'ty": "P"}']
    assert out[-1]["choices"][0]["finish_reason"] == "tool_calls"
    usage = json.loads(t.usage_event[6:])["usage"]  # not asked for: kept for the log
    assert usage["prompt_tokens"] == 12 and usage["completion_tokens"] == 7
    assert usage["prompt_tokens_details"] == {"cached_tokens": 3}


def test_stream_split_anywhere_translates_the_same() -> None:
    whole = ANTHROPIC.chat_stream(call(stream=True, id="x", created=1))
    expected = whole.feed(TEXT_THEN_TOOL) + whole.finish()
    t = ANTHROPIC.chat_stream(call(stream=True, id="x", created=1))
    out = b"".join(t.feed(TEXT_THEN_TOOL[i:i + 7]) for i in range(0, len(TEXT_THEN_TOOL), 7)) + t.finish()
    assert out == expected


def test_each_event_is_translated_as_it_arrives() -> None:
    t = ANTHROPIC.chat_stream(call(stream=True))
    assert b'"role":"assistant"' in t.feed(sse(START))
    assert t.feed(b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,') == b""
    assert b'"content":"Hi"' in t.feed(b'"delta":{"type":"text_delta","text":"Hi"}}\n\n')


def test_stream_usage_chunk_when_asked() -> None:
    t = ANTHROPIC.chat_stream(call(stream=True, include_usage=True))
    out = chunks(t.feed(TEXT_THEN_TOOL) + t.finish())
    assert out[-1]["choices"] == [] and out[-1]["usage"]["completion_tokens"] == 7 and t.usage_event == b""


def test_stream_error_event() -> None:
    t = ANTHROPIC.chat_stream(call(stream=True))
    out = t.feed(sse(START, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    last = out.split(b"\n\n")[-2]
    assert json.loads(last[6:]) == {"error": {"message": "Overloaded", "type": "server_error",
                                              "param": None, "code": "overloaded_error"}}


def test_stream_cut_short_still_ends() -> None:
    t = ANTHROPIC.chat_stream(call(stream=True))
    out = t.feed(sse(START)) + t.finish()
    assert out.endswith(b"data: [DONE]\n\n") and b'"finish_reason":"stop"' in out


@pytest.mark.parametrize(("status", "body", "type_", "code"), [
    (529, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', "server_error",
     "overloaded_error"),
    (400, b'{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}', "invalid_request_error",
     "invalid_request_error"),
    (401, b'{"type":"error","error":{"type":"authentication_error","message":"no"}}', "authentication_error",
     "authentication_error"),
    (502, b"<html>bad gateway</html>", "server_error", None),
])
def test_errors(status: int, body: bytes, type_: str, code: str | None) -> None:
    err = json.loads(ANTHROPIC.error_body(status, body, call()))["error"]
    assert (err["type"], err["code"]) == (type_, code) and err["message"]
