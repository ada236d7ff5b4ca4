"""The unified API end to end: the official openai SDK -> a real gateway -> the mock speaking each
provider's own wire format (Anthropic Messages, Gemini generateContent), and back."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, gateway_config, sdk

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]}}}


@pytest.fixture(scope="module")
def up() -> Iterator[MockUpstreamThread]:
    """A mock of its own: tests here set its status knob while running."""
    with MockUpstreamThread(chunks=4) as m:
        yield m


@pytest.fixture(scope="module")
def gw(up: MockUpstreamThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    cfg = gateway_config(up.url, providers={
        "openai": {"base_url": up.url}, "anthropic": {"base_url": up.url, "format": "anthropic"},
        "gemini": {"base_url": up.url}, "groq": {"base_url": up.url},
        "lenient": {"base_url": up.url, "format": "anthropic", "drop_params": True},
        "keyed": {"base_url": up.url, "format": "anthropic", "api_key": "sk-ant-configured"},
        "keyedgem": {"base_url": up.url, "format": "gemini", "api_key": "gem-configured"},
    })
    g = GatewayProcess(cfg, tmp_path_factory.mktemp("unified"))
    yield g
    assert g.stop() == 0, g.log()


@pytest.fixture
def client(gw: GatewayProcess, up: MockUpstreamThread) -> Iterator[openai.OpenAI]:
    up.mock.status = 0
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client-key", max_retries=0, timeout=10)
    yield c
    up.mock.status = 0
    c.close()


def last(up: MockUpstreamThread) -> Any:
    return up.mock.requests[-1]


# --- Anthropic -------------------------------------------------------------------------------


def test_anthropic_plain_answer_system_stop_image(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    r = client.chat.completions.create(
        model="anthropic/claude-sonnet-4-5", temperature=0.2, top_p=0.9, stop=["END"], max_tokens=50,
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                               {"type": "image_url", "image_url": {"url": PNG}},
                                               {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]},
                  {"role": "assistant", "content": "A picture."},
                  {"role": "user", "content": "Sure?"}])
    sent = last(up)
    assert sent.path == "/v1/messages"
    assert sent.header("x-api-key") == "sk-client-key" and sent.header("authorization") is None
    assert sent.header("anthropic-version") == "2023-06-01"
    body = sent.json()
    assert body["model"] == "claude-sonnet-4-5" and body["system"] == "Be brief."
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["stop_sequences"]) == (50, 0.2, 0.9, ["END"])
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    img, url = body["messages"][0]["content"][1:]
    assert img["source"] == {"type": "base64", "media_type": "image/png", "data": PNG.split(",", 1)[1]}
    assert url["source"] == {"type": "url", "url": "https://x.test/a.png"}
    assert r.object == "chat.completion" and r.model == "claude-sonnet-4-5"
    assert r.choices[0].message.content == "Hello from the mock" and r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens == 4 and r.usage.prompt_tokens > 0


def test_anthropic_default_max_tokens(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    client.chat.completions.create(model="anthropic/claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}])
    assert last(up).json()["max_tokens"] == 4096


def test_anthropic_stream_arrives_as_openai_chunks(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    chunks = list(client.chat.completions.create(
        model="anthropic/claude-sonnet-4-5", stream=True, messages=[{"role": "user", "content": "hi"}]))
    assert last(up).json()["stream"] is True
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from the mock"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)  # not asked for: kept for the log only


def test_anthropic_stream_usage_when_asked(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="anthropic/claude-sonnet-4-5", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "hi"}]))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_anthropic_tool_call_round_trip(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    r = client.chat.completions.create(
        model="anthropic/claude-sonnet-4-5", tools=[WEATHER], tool_choice="required",
        messages=[{"role": "user", "content": "Weather in Paris?"}])
    sent = last(up).json()
    assert sent["tools"][0] == {"name": "get_weather", "description": "Weather in a city",
                                "input_schema": WEATHER["function"]["parameters"]}
    assert sent["tool_choice"] == {"type": "any"}
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}
    # The tool's answer goes back as a tool_result block in a user turn.
    client.chat.completions.create(model="anthropic/claude-sonnet-4-5", tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"}, r.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
    msgs = last(up).json()["messages"]
    assert msgs[1]["content"][-1] == {"type": "tool_use", "id": call.id, "name": "get_weather",
                                      "input": {"city": "Paris", "days": 3}}
    assert msgs[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}


def test_anthropic_streamed_tool_call_arguments(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="anthropic/claude-sonnet-4-5", stream=True, tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=[{"role": "user", "content": "Weather?"}]))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id and deltas[0].function.name == "get_weather"
    assert len(deltas) >= 3  # the name, then the arguments in pieces as they arrived
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Paris", "days": 3}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_anthropic_response_format_json_schema(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    r = client.chat.completions.create(
        model="anthropic/claude-sonnet-4-5", messages=[{"role": "user", "content": "json please"}],
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    sent = last(up).json()
    assert sent["tool_choice"] == {"type": "tool", "name": "json_response"}
    assert sent["tools"][0]["input_schema"] == schema
    assert json.loads(r.choices[0].message.content) == {"answer": "Paris"}
    assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(("status", "kind", "error_class"), [
    (529, "overloaded_error", openai.InternalServerError),
    (400, "invalid_request_error", openai.BadRequestError),
    (429, "rate_limit_error", openai.RateLimitError),
])
def test_anthropic_errors_in_openai_shape(client: openai.OpenAI, up: MockUpstreamThread, status: int, kind: str,
                                          error_class: type[openai.APIStatusError]) -> None:
    up.mock.status = status
    with pytest.raises(error_class) as info:
        client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == status
    assert info.value.body["code"] == kind and info.value.body["message"] == f"mock error {status}"
    assert info.value.body["type"] in ("server_error", "invalid_request_error", "rate_limit_error")


def test_unsupported_parameter_is_a_400_naming_it(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    before = up.mock.request_count
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="anthropic/claude-sonnet-4-5", logprobs=True,
                                       messages=[{"role": "user", "content": "x"}])
    assert info.value.body["param"] == "logprobs" and "drop_params" in info.value.body["message"]
    assert up.mock.request_count == before  # refused before any upstream call
    # The gateway keeps serving.
    assert client.chat.completions.create(model="anthropic/claude-sonnet-4-5",
                                          messages=[{"role": "user", "content": "x"}]).choices


def test_configured_provider_key_replaces_the_clients(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    """A provider configured with ``api_key`` sends that key, in its own scheme, on translated calls;
    the client's key never reaches it."""
    client.chat.completions.create(model="keyed/claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])
    sent = last(up)
    assert sent.path == "/v1/messages"
    assert sent.header("x-api-key") == "sk-ant-configured" and sent.header("authorization") is None
    client.chat.completions.create(model="keyedgem/gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}])
    sent = last(up)
    assert sent.header("x-goog-api-key") == "gem-configured" and sent.header("authorization") is None
    assert "sk-client-key" not in sent.path


@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"])
@pytest.mark.parametrize("extra", [
    {"messages": [{"role": "user", "content": ["a bare string part"]}]},
    {"messages": [{"role": "user", "content": {"text": "an object, not a list"}}]},
    {"messages": [{"role": "user", "content": "hi"}], "stop": 5},
    {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema", "json_schema": "x"}},
])
def test_a_body_of_the_wrong_shape_is_a_400_and_the_gateway_serves_on(
        gw: GatewayProcess, client: openai.OpenAI, model: str, extra: dict[str, Any]) -> None:
    req = urllib.request.Request(gw.url + "/v1/chat/completions", data=json.dumps({"model": model, **extra}).encode(),
                                 headers={"content-type": "application/json", "authorization": "Bearer sk-x"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    with info.value as err:
        assert err.code == 400
        body = json.loads(err.read())
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "invalid_request_body", body
    assert client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}]).choices


def test_drop_params_leaves_it_out(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    client.chat.completions.create(model="lenient/claude-sonnet-4-5", logprobs=True, presence_penalty=0.5,
                                   messages=[{"role": "user", "content": "x"}])
    sent = last(up).json()
    assert "logprobs" not in sent and "presence_penalty" not in sent and sent["model"] == "claude-sonnet-4-5"


# --- Gemini ----------------------------------------------------------------------------------


def test_gemini_plain_answer(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    r = client.chat.completions.create(
        model="gemini/gemini-2.5-flash", max_tokens=64, stop="STOP", temperature=0.5,
        messages=[{"role": "developer", "content": "Be brief."},
                  {"role": "user", "content": [{"type": "text", "text": "Look"},
                                               {"type": "image_url", "image_url": {"url": PNG}}]}])
    sent = last(up)
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.header("x-goog-api-key") == "sk-client-key" and sent.header("authorization") is None
    body = sent.json()
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": PNG.split(",", 1)[1]}}
    assert body["generationConfig"] == {"temperature": 0.5, "maxOutputTokens": 64, "stopSequences": ["STOP"]}
    assert r.choices[0].message.content == "Hello from the mock" and r.choices[0].finish_reason == "stop"
    assert r.model == "gemini-2.5-flash" and r.usage is not None and r.usage.completion_tokens == 4


def test_gemini_stream(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    chunks = list(client.chat.completions.create(
        model="gemini/gemini-2.5-flash", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "hi"}]))
    assert last(up).path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the mock"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_gemini_tool_call_and_result(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    r = client.chat.completions.create(model="gemini/gemini-2.5-flash", tools=[WEATHER], tool_choice="required",
                                       messages=[{"role": "user", "content": "Weather?"}])
    sent = last(up).json()
    assert sent["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Weather in a city",
        "parametersJsonSchema": WEATHER["function"]["parameters"]}]}]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}
    client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=[
        {"role": "user", "content": "Weather?"}, r.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'}])
    contents = last(up).json()["contents"]
    assert contents[1] == {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris", "days": 3}}}]}
    assert contents[2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"sky": "sunny"}}}]}


def test_gemini_streamed_tool_call(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="gemini/gemini-2.5-flash", tools=[WEATHER], stream=True,
                                                 tool_choice="required", messages=[{"role": "user", "content": "x"}]))
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "get_weather" and json.loads(calls[0].function.arguments)["city"] == "Paris"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_gemini_response_format(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    r = client.chat.completions.create(
        model="gemini/gemini-2.5-flash", messages=[{"role": "user", "content": "json"}],
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    config = last(up).json()["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    assert json.loads(r.choices[0].message.content) == {"answer": "Paris"}


def test_gemini_http_image_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}])
    assert info.value.body["param"] == "messages[0].content[0]"


def test_gemini_error_mapped(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    up.mock.status = 403
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "PERMISSION_DENIED" and info.value.body["type"] == "permission_error"


# --- OpenAI-compatible, and what stays pass-through ------------------------------------------


def test_openai_compatible_provider_gets_its_model(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    r = client.chat.completions.create(model="groq/llama-3.1-8b-instant", messages=[{"role": "user", "content": "hi"}])
    sent = last(up)
    assert sent.path == "/v1/chat/completions" and sent.header("authorization") == "Bearer sk-client-key"
    assert sent.json()["model"] == "llama-3.1-8b-instant" and r.model == "llama-3.1-8b-instant"
    chunks = list(client.chat.completions.create(model="groq/llama-3.1-8b-instant", stream=True,
                                                 messages=[{"role": "user", "content": "hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the mock"
    # Usage asked for on the client's behalf (for the log, stages/stream_usage.py) and kept from it.
    assert last(up).json()["stream_options"] == {"include_usage": True} and all(c.choices for c in chunks)


def test_unknown_prefix_stays_pass_through(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    client.chat.completions.create(model="meta-llama/Llama-3-8b", messages=[{"role": "user", "content": "hi"}])
    assert last(up).json()["model"] == "meta-llama/Llama-3-8b"
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert last(up).json()["model"] == "gpt-4o-mini" and last(up).path == "/v1/chat/completions"


def test_anthropic_sdk_pass_through_still_works(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    c = sdk(anthropic.Anthropic(base_url=gw.url + "/anthropic", api_key="sk-ant-key", max_retries=0))
    m = c.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].text == "Hello from the mock"
    sent = last(up)  # the client's own credential, in the header its SDK chose, passed through as sent
    assert "sk-ant-key" in (sent.header("x-api-key") or sent.header("authorization") or "")
    assert sent.header("anthropic-version") is not None and sent.path == "/v1/messages"
    with c.messages.stream(model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "hi"}]) as s:
        assert s.get_final_text() == "Hello from the mock"


def test_raw_bad_json_stays_with_the_default_provider(gw: GatewayProcess) -> None:
    req = urllib.request.Request(gw.url + "/v1/chat/completions", data=b'{"model": "anthropic/x", "messages": [',
                                 headers={"content-type": "application/json"})
    # Not parseable, so not a unified request: the default provider answers it (the mock's 400).
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    with info.value as answer:
        assert answer.code == 400 and "error" in json.loads(answer.read())


def test_stream_chunks_arrive_as_the_provider_sends_them(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    up.mock.chunk_delay_ms = 150
    try:
        times = []
        for chunk in client.chat.completions.create(model="anthropic/claude-sonnet-4-5", stream=True,
                                                    messages=[{"role": "user", "content": "hi"}]):
            if chunk.choices and chunk.choices[0].delta.content:
                times.append(time.monotonic())
    finally:
        up.mock.chunk_delay_ms = 0
    assert len(times) == 4 and times[-1] - times[0] > 0.3  # not gathered up and sent at the end


def test_stream_cut_upstream_ends_with_an_openai_error(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    up.mock.chunk_delay_ms, up.mock.reset = 20, b"mid"
    try:
        with pytest.raises(openai.APIError) as info:
            for _ in client.chat.completions.create(model="anthropic/claude-sonnet-4-5", stream=True,
                                                    messages=[{"role": "user", "content": "hi"}]):
                pass
    finally:
        up.mock.chunk_delay_ms, up.mock.reset = 0, None
    assert "upstream" in str(info.value).lower()
