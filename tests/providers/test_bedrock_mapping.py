"""The Bedrock adapter's pure parts: the ConverseStream translator fed frames cut anywhere, stream
exceptions and corruption, usage for the request log (pass-through), and request mapping edges."""

from __future__ import annotations

import random

import orjson
import pytest

from fastgw.errors import UpstreamProtocolError
from fastgw.providers import eventstream as es
from fastgw.providers.base import Call, UnsupportedParameter
from fastgw.providers.bedrock import BEDROCK
from fastgw.providers.bedrock_stream import ConverseStream
from fastgw.requestlog.usage import extract_usage
from fastgw.testing.mock_bedrock_azure import converse_answer, converse_stream

TOOL = {"name": "get_weather", "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def _call(**kw: object) -> Call:
    return Call("bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", "", **kw)  # type: ignore[arg-type]


def _events(sse: bytes) -> list[dict]:
    return [orjson.loads(e[6:]) for e in sse.split(b"\n\n") if e.startswith(b"data: {")]


def _run(frames: bytes, call: Call, cuts: list[int]) -> tuple[bytes, ConverseStream]:
    t = ConverseStream(call)
    out = b""
    for a, b in zip([0, *cuts], [*cuts, len(frames)]):
        out += t.feed(frames[a:b])
    return out + t.finish(), t


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("tool", [None, TOOL])
def test_stream_translation_does_not_depend_on_where_frames_are_cut(seed: int, tool: dict | None) -> None:
    frames = b"".join(converse_stream(("Hello", " world"), 10, tool))
    whole, _ = _run(frames, _call(stream=True), [])
    rng = random.Random(seed)
    cut, _ = _run(frames, _call(stream=True), sorted(rng.sample(range(1, len(frames)), 12)))
    strip = lambda b: [{k: v for k, v in e.items() if k not in ("id", "created")} for e in _events(b)]
    assert strip(cut) == strip(whole) and whole.endswith(b"data: [DONE]\n\n")


def test_stream_text_finish_and_hidden_usage() -> None:
    out, t = _run(b"".join(converse_stream(("a", "b"), 7, None)), _call(stream=True), [])
    events = _events(out)
    assert [e["choices"][0]["delta"].get("content") for e in events[1:3]] == ["a", "b"]
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in e for e in events)
    assert orjson.loads(t.usage_event[6:])["usage"]["prompt_tokens"] == 7


def test_stream_tool_call_pieces_and_usage_when_asked() -> None:
    out, _ = _run(b"".join(converse_stream((), 5, TOOL)), _call(stream=True, include_usage=True), [])
    events = _events(out)
    calls = [tc for e in events if e["choices"] for tc in e["choices"][0]["delta"].get("tool_calls", ())]
    assert calls[0]["id"] == "tooluse_mock01" and calls[0]["function"]["name"] == "get_weather"
    args = orjson.loads("".join(c["function"]["arguments"] for c in calls))
    assert list(args) == ["city"] and isinstance(args["city"], str)
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]][-1] == "tool_calls"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 12


def test_stream_exception_becomes_an_openai_error_event() -> None:
    frames = es.event("messageStart", b'{"role":"assistant"}') + es.exception(
        "throttlingException", b'{"message":"Too many requests, please wait before trying again."}')
    out, _ = _run(frames, _call(stream=True), [])
    err = _events(out)[-1]["error"]
    assert err == {"message": "Too many requests, please wait before trying again.", "type": "rate_limit_error",
                   "param": None, "code": "throttlingException"}
    assert b"[DONE]" not in out


def test_stream_bad_crc_and_cut_stream_are_upstream_protocol_errors() -> None:
    frames = bytearray(b"".join(converse_stream(("a",), 1, None)))
    frames[40] ^= 0x01
    t = ConverseStream(_call(stream=True))
    with pytest.raises(UpstreamProtocolError, match="broken event stream"):
        t.feed(bytes(frames))
    whole = b"".join(converse_stream(("a",), 1, None))
    t = ConverseStream(_call(stream=True))
    t.feed(whole[:-5])
    with pytest.raises(UpstreamProtocolError, match="broken event stream: the event stream ended inside a message"):
        t.finish()


def test_response_usage_with_cache_tokens() -> None:
    answer = converse_answer(("x",), 3, None)
    answer["usage"] = {"inputTokens": 10, "outputTokens": 4, "totalTokens": 44, "cacheReadInputTokens": 20,
                       "cacheWriteInputTokens": 10}
    out = orjson.loads(BEDROCK.chat_response(orjson.dumps(answer), _call()))
    assert out["usage"] == {"prompt_tokens": 40, "completion_tokens": 4, "total_tokens": 44,
                            "prompt_tokens_details": {"cached_tokens": 20}}
    assert out["model"] == "anthropic.claude-3-5-sonnet-20240620-v1:0"


PATH = "/bedrock/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"


def test_log_usage_for_passthrough_converse_and_converse_stream() -> None:
    answer = converse_answer(("x",), 3, None)
    answer["usage"] = {"inputTokens": 10, "outputTokens": 4, "totalTokens": 34, "cacheReadInputTokens": 20}
    u = extract_usage("bedrock", PATH, orjson.dumps(answer), False)
    assert u is not None and (u.prompt_tokens, u.completion_tokens, u.cache_read_tokens) == (30, 4, 20)
    assert u.model == "anthropic.claude-3-5-sonnet-20240620-v1:0"
    # the stream as the log keeps it: binary frames, decoded as UTF-8 with replacement by the exporter
    body = b"".join(converse_stream(("a", "b", "c"), 9, None)).decode("utf-8", "replace").encode()
    u = extract_usage("bedrock", PATH + "-stream", body, True)
    assert u is not None and (u.prompt_tokens, u.completion_tokens) == (9, 3)


def test_log_usage_for_passthrough_invoke_with_response_stream() -> None:
    import base64

    from fastgw.testing.mock_payloads import anthropic_stream

    frames = b"".join(
        es.event("chunk", orjson.dumps({"bytes": base64.b64encode(sse.split(b"data: ", 1)[1].strip()).decode()}))
        for sse in anthropic_stream("msg_1", "claude-3-5-sonnet-20240620", ("a", "b"), 11))
    u = extract_usage("bedrock", "/bedrock/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke-with-response-stream",
                      frames.decode("utf-8", "replace").encode(), True)
    assert u is not None and (u.prompt_tokens, u.completion_tokens) == (11, 2)


def test_request_mapping_edges() -> None:
    call = _call()
    BEDROCK.chat_request({"model": "x", "messages": [
        {"role": "system", "content": "one"}, {"role": "developer", "content": [{"type": "text", "text": "two"}]},
        {"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "max_completion_tokens": 9}, call)
    body = orjson.loads(call.body)
    assert body == {"messages": [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}],
                    "system": [{"text": "one"}, {"text": "two"}], "inferenceConfig": {"maxTokens": 9}}
    assert call.path == b"/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    with pytest.raises(UnsupportedParameter, match="tool_choice"):
        BEDROCK.chat_request({"messages": [{"role": "user", "content": "a"}], "tools": [
            {"type": "function", "function": {"name": "f"}}], "tool_choice": "none"}, _call())
    with pytest.raises(UnsupportedParameter, match="'n'"):
        BEDROCK.chat_request({"messages": [{"role": "user", "content": "a"}], "n": 2}, _call())
    lenient = _call(drop_params=True)
    BEDROCK.chat_request({"messages": [{"role": "user", "content": "a"}], "logprobs": True, "tools": [
        {"type": "function", "function": {"name": "f"}}], "tool_choice": "none"}, lenient)
    assert "logprobs" not in orjson.loads(lenient.body) and "toolChoice" not in orjson.loads(lenient.body)["toolConfig"]


def test_error_body() -> None:
    body = BEDROCK.error_body(429, b'{"message":"Too many tokens, please wait before trying again."}', _call())
    assert orjson.loads(body) == {"error": {"message": "Too many tokens, please wait before trying again.",
                                            "type": "rate_limit_error", "param": None, "code": None}}
    assert orjson.loads(BEDROCK.error_body(502, b"<html>bad gateway</html>", _call()))["error"]["message"] == \
        "provider answered 502: <html>bad gateway</html>"


def test_config_errors_name_the_key() -> None:
    from fastgw.config import ConfigError, from_dict

    with pytest.raises(ConfigError, match=r"providers\.bedrock\.aws_secret_access_key: set .* together.* in cfg\.yaml"):
        from_dict({"providers": {"bedrock": {"aws_access_key_id": "AKID"}}}, "cfg.yaml")
    with pytest.raises(ConfigError, match=r"providers\.bedrock\.region: 'Frankfurt' is not an AWS region"):
        from_dict({"providers": {"bedrock": {"region": "Frankfurt"}}}, "cfg.yaml")
    with pytest.raises(ConfigError, match=r"providers\.bedrock\.aws_region"):
        from_dict({"providers": {"bedrock": {"aws_region": "us-east-1"}}}, "cfg.yaml")


def test_bind_region_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastgw.config import from_dict
    from fastgw.providers.table import build_table

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    table = build_table(from_dict({"providers": {
        "bedrock-eu": {"base_url": "https://bedrock-runtime.{region}.amazonaws.com", "format": "bedrock"},
        "bedrock-us": {"base_url": "https://bedrock-runtime.{region}.amazonaws.com", "format": "bedrock",
                       "region": "us-west-2", "aws_access_key_id": "AKIDCFG", "aws_secret_access_key": "cfg"}}}))
    eu, us = table["bedrock-eu"], table["bedrock-us"]
    assert eu.origin.host == "bedrock-runtime.eu-central-1.amazonaws.com" and us.origin.host == "bedrock-runtime.us-west-2.amazonaws.com"
    assert eu.format.signing.creds.access_key_id == "AKIDENV"  # type: ignore[attr-defined]
    assert us.format.signing.creds.access_key_id == "AKIDCFG"  # type: ignore[attr-defined]
    assert us.format.signing.host == "bedrock-runtime.us-west-2.amazonaws.com"  # type: ignore[attr-defined]
    assert table["bedrock"].origin.host == "bedrock-runtime.eu-central-1.amazonaws.com"  # the catalog entry
