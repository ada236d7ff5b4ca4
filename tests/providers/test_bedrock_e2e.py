"""Bedrock end to end: the official openai SDK (unified API) and plain HTTP clients (pass-through)
-> a real gateway holding AWS credentials from the standard variables -> the mock speaking Converse,
ConverseStream (event-stream frames) and InvokeModel, which checks every SigV4 signature it gets."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from fastgw.providers import eventstream
from fastgw.testing.mock_bedrock_azure import MOCK_AWS_CREDENTIALS
from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, gateway_config, sdk

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
SENT_PATH = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0"
PNG_BYTES = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
AWS_ENV = {"AWS_ACCESS_KEY_ID": MOCK_AWS_CREDENTIALS.access_key_id,
           "AWS_SECRET_ACCESS_KEY": MOCK_AWS_CREDENTIALS.secret_access_key,
           "AWS_SESSION_TOKEN": "", "AWS_REGION": "eu-west-3", "AWS_DEFAULT_REGION": ""}


@pytest.fixture(scope="module")
def up() -> Iterator[MockUpstreamThread]:
    with MockUpstreamThread(chunks=4) as m:
        yield m


def _gateway(up: MockUpstreamThread, tmp: Any, env: dict[str, str], **bedrock: Any) -> GatewayProcess:
    cfg = gateway_config(up.url, providers={"bedrock": {"base_url": up.url, **bedrock}})
    return GatewayProcess(cfg, tmp, env=env)


@pytest.fixture(scope="module")
def gw(up: MockUpstreamThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = _gateway(up, tmp_path_factory.mktemp("bedrock"), AWS_ENV)
    yield g
    assert g.stop() == 0, g.log()


@pytest.fixture
def client(gw: GatewayProcess) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client-key", max_retries=0, timeout=10)
    yield c
    c.close()


def last(up: MockUpstreamThread) -> Any:
    return up.mock.requests[-1]


def assert_signed_by_gateway(req: Any, region: str = "eu-west-3") -> None:
    auth = req.header("authorization")
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={MOCK_AWS_CREDENTIALS.access_key_id}/")
    assert f"/{region}/bedrock/aws4_request, SignedHeaders=" in auth
    assert all("sk-client-key" not in v and "CLIENTKEY" not in v for _, v in req.headers)


# --- the unified API -------------------------------------------------------------------------


def test_unified_text_with_system_image_and_inference_config(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    r = client.chat.completions.create(
        model=f"bedrock/{MODEL}", max_tokens=200, temperature=0.3, top_p=0.9, stop=["END"],
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                               {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_BYTES}"}}]}])
    assert r.choices[0].message.content == _pieces(4)
    assert r.choices[0].finish_reason == "stop" and r.model == MODEL and r.object == "chat.completion"
    req = last(up)
    assert req.path == SENT_PATH + "/converse"
    assert_signed_by_gateway(req)
    body = req.json()
    assert body["system"] == [{"text": "Be brief."}]
    assert body["inferenceConfig"] == {"maxTokens": 200, "temperature": 0.3, "topP": 0.9, "stopSequences": ["END"]}
    assert body["messages"] == [{"role": "user", "content": [
        {"text": "What is this?"}, {"image": {"format": "png", "source": {"bytes": PNG_BYTES}}}]}]
    assert r.usage is not None and r.usage.completion_tokens == 4 and r.usage.prompt_tokens == len(req.body) // 4
    assert r.usage.total_tokens == r.usage.prompt_tokens + 4


def _pieces(n: int) -> str:
    from fastgw.testing.mock_payloads import content_pieces
    return "".join(content_pieces(n))


def test_unified_tool_call_and_tool_result_round_trip(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    r = client.chat.completions.create(model=f"bedrock/{MODEL}", tools=[WEATHER], tool_choice="required",
                                       messages=[{"role": "user", "content": "Weather in Paris?"}])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.id == "tooluse_mock01"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    sent = last(up).json()
    assert sent["toolConfig"] == {"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather in a city",
                                                          "inputSchema": {"json": WEATHER["function"]["parameters"]}}}],
                                  "toolChoice": {"any": {}}}
    # the next turn carries the call and its result back as toolUse / toolResult blocks
    r2 = client.chat.completions.create(model=f"bedrock/{MODEL}", tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}])
    assert r2.choices[0].finish_reason == "stop" and r2.choices[0].message.content == _pieces(4)
    sent = last(up).json()
    assert sent["messages"][1] == {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": "tooluse_mock01", "name": "get_weather", "input": {"city": "Paris"}}}]}
    assert sent["messages"][2] == {"role": "user", "content": [
        {"toolResult": {"toolUseId": "tooluse_mock01", "content": [{"text": "sunny, 21C"}]}}]}
    assert "toolChoice" not in sent["toolConfig"]


def test_unified_stream_text_with_usage(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    chunks = list(client.chat.completions.create(model=f"bedrock/{MODEL}", stream=True,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "hi"}]))
    assert last(up).path == SENT_PATH + "/converse-stream"
    assert_signed_by_gateway(last(up))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == _pieces(4)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert len({c.id for c in chunks}) == 1


def test_unified_stream_tool_call(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    chunks = list(client.chat.completions.create(
        model=f"bedrock/{MODEL}", stream=True, tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=[{"role": "user", "content": "Weather in Paris?"}]))
    assert last(up).json()["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or ())]
    assert deltas[0].id == "tooluse_mock01" and deltas[0].function.name == "get_weather"
    assert len(deltas) == 3  # the start, then the input JSON in two pieces, as Bedrock sent it
    args = "".join(d.function.arguments or "" for d in deltas)
    assert isinstance(json.loads(args)["city"], str)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert all(c.usage is None for c in chunks)  # not asked for: kept for the log only


def test_unified_provider_error_maps_to_openai_error(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    up.mock.status = 400  # translated calls send none of the client's headers, x-mock-* included
    try:
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model=f"bedrock/{MODEL}", messages=[{"role": "user", "content": "hi"}])
    finally:
        up.mock.status = 0
    assert info.value.status_code == 400 and info.value.message.endswith(" - mock error 400")
    assert info.value.body == {"message": "mock error 400", "type": "invalid_request_error", "param": None, "code": None}


def test_unified_refuses_what_converse_cannot_do(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    before = up.mock.request_count
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=f"bedrock/{MODEL}", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert "image_url" in info.value.message and "Bedrock fetches no URLs" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=f"bedrock/{MODEL}", response_format={"type": "json_object"},
                                       messages=[{"role": "user", "content": "hi"}])
    assert "response_format" in info.value.message
    assert up.mock.request_count == before  # refused by the gateway, never sent


def test_wrong_secret_is_caught_by_the_mock(up: MockUpstreamThread, tmp_path: Any) -> None:
    """The mock really checks signatures: a gateway with a wrong secret gets AWS's 403."""
    g = _gateway(up, tmp_path, {**AWS_ENV, "AWS_SECRET_ACCESS_KEY": "wrong-secret"})
    try:
        c = sdk(openai.OpenAI(base_url=g.url + "/v1", api_key="sk-client-key", max_retries=0, timeout=10))
        with pytest.raises(openai.PermissionDeniedError) as info:
            c.chat.completions.create(model=f"bedrock/{MODEL}", messages=[{"role": "user", "content": "hi"}])
        assert "signature we calculated does not match" in info.value.message
        c.close()
    finally:
        assert g.stop() == 0, g.log()


def test_config_credentials_with_session_token_and_region(up: MockUpstreamThread, tmp_path: Any) -> None:
    env = {k: "" for k in AWS_ENV}
    g = _gateway(up, tmp_path, env, region="ap-south-1", aws_access_key_id=MOCK_AWS_CREDENTIALS.access_key_id,
                 aws_secret_access_key=MOCK_AWS_CREDENTIALS.secret_access_key, aws_session_token="FwoGZXIvYXdzE-token")
    try:
        c = sdk(openai.OpenAI(base_url=g.url + "/v1", api_key="sk-client-key", max_retries=0, timeout=10))
        r = c.chat.completions.create(model=f"bedrock/{MODEL}", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content == _pieces(4)
        req = last(up)
        assert_signed_by_gateway(req, "ap-south-1")
        assert req.header("x-amz-security-token") == "FwoGZXIvYXdzE-token"
        assert "x-amz-security-token" in req.header("authorization")
        c.close()
    finally:
        assert g.stop() == 0, g.log()


def test_no_credentials_is_a_clear_error(up: MockUpstreamThread, tmp_path: Any) -> None:
    g = _gateway(up, tmp_path, {k: "" for k in AWS_ENV})
    try:
        c = sdk(openai.OpenAI(base_url=g.url + "/v1", api_key="sk-client-key", max_retries=0, timeout=10))
        with pytest.raises(openai.InternalServerError) as info:
            c.chat.completions.create(model=f"bedrock/{MODEL}", messages=[{"role": "user", "content": "hi"}])
        assert "AWS_ACCESS_KEY_ID" in info.value.message
        c.close()
    finally:
        assert g.stop() == 0, g.log()


# --- pass-through, re-signed -----------------------------------------------------------------


def _post(gw: GatewayProcess, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """As an AWS SDK pointed at the gateway would send it: signed with the client's own (useless) keys."""
    req = urllib.request.Request(gw.url + path, data=json.dumps(body).encode(), method="POST", headers={
        "content-type": "application/json", "x-amz-date": "20200101T000000Z",
        "x-amz-security-token": "client-token", "amz-sdk-invocation-id": "abc",
        "authorization": "AWS4-HMAC-SHA256 Credential=CLIENTKEY/20200101/us-east-1/bedrock/aws4_request, "
                         "SignedHeaders=host;x-amz-date, Signature=00"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()


CONVERSE = {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "inferenceConfig": {"maxTokens": 50}}


@pytest.mark.parametrize("model_in_path", [MODEL, MODEL.replace(":", "%3A")])
def test_passthrough_converse_is_resigned(gw: GatewayProcess, up: MockUpstreamThread, model_in_path: str) -> None:
    status, _, body = _post(gw, f"/bedrock/model/{model_in_path}/converse", CONVERSE)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["output"]["message"]["content"] == [{"text": _pieces(4)}] and answer["stopReason"] == "end_turn"
    req = last(up)
    assert req.path == SENT_PATH + "/converse"
    assert_signed_by_gateway(req)
    assert req.header("x-amz-security-token") is None  # the client's, dropped; the gateway has none
    assert req.header("x-amz-date") != "20200101T000000Z"
    assert req.header("amz-sdk-invocation-id") == "abc"
    assert req.json() == CONVERSE


def test_passthrough_converse_stream_is_event_stream(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    status, headers, body = _post(gw, f"/bedrock/model/{MODEL}/converse-stream", CONVERSE)
    assert status == 200 and headers["content-type"] == "application/vnd.amazon.eventstream"
    messages = eventstream.Decoder().feed(body)
    kinds = [m.event_type for m in messages]
    assert kinds == ["messageStart", *["contentBlockDelta"] * 4, "contentBlockStop", "messageStop", "metadata"]
    assert json.loads(messages[-1].payload)["usage"]["outputTokens"] == 4
    assert_signed_by_gateway(last(up))


def test_passthrough_invoke_and_invoke_stream(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    native = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
              "messages": [{"role": "user", "content": "hi"}]}
    status, headers, body = _post(gw, f"/bedrock/model/{MODEL}/invoke", native)
    assert status == 200 and json.loads(body)["content"][0]["text"] == _pieces(4)
    assert headers["x-amzn-bedrock-output-token-count"] == "4"
    assert last(up).path == SENT_PATH + "/invoke"
    status, _, body = _post(gw, f"/bedrock/model/{MODEL}/invoke-with-response-stream", native)
    assert status == 200
    events = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in eventstream.Decoder().feed(body)]
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    assert_signed_by_gateway(last(up))


def test_passthrough_wrong_signature_reaches_the_client_as_aws_error(up: MockUpstreamThread, tmp_path: Any) -> None:
    g = _gateway(up, tmp_path, {**AWS_ENV, "AWS_ACCESS_KEY_ID": "AKIDSOMEONEELSE"})
    try:
        status, headers, body = _post(g, f"/bedrock/model/{MODEL}/converse", CONVERSE)
        assert status == 403 and headers["x-amzn-errortype"] == "InvalidSignatureException"
        assert json.loads(body) == {"message": "The security token included in the request is invalid."}
    finally:
        assert g.stop() == 0, g.log()


def test_request_log_has_usage_and_no_credentials(up: MockUpstreamThread, tmp_path: Any) -> None:
    """Pass-through (JSON and event-stream) and unified rows all carry Bedrock's token counts."""
    g = _gateway(up, tmp_path, {**AWS_ENV, "AWS_SESSION_TOKEN": "session-token-secret"})
    try:
        assert _post(g, f"/bedrock/model/{MODEL}/converse", CONVERSE)[0] == 200
        assert _post(g, f"/bedrock/model/{MODEL}/converse-stream", CONVERSE)[0] == 200
        c = sdk(openai.OpenAI(base_url=g.url + "/v1", api_key="sk-client-key", max_retries=0, timeout=10))
        list(c.chat.completions.create(model=f"bedrock/{MODEL}", stream=True, messages=[{"role": "user", "content": "hi"}]))
        c.close()
    finally:
        assert g.stop() == 0, g.log()
    rows = [json.loads(line) for f in sorted((g.log_dir / "sink").rglob("*.jsonl")) for line in f.read_text().splitlines()]
    rows.sort(key=lambda r: r["created_at"])
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == ["converse", "converse-stream", "completions"]
    for r in rows:
        assert r["usage_source"] == "provider" and r["completion_tokens"] == 4 and r["prompt_tokens"] > 0, r
        assert r["model_served"] == MODEL
        # Claude on Bedrock at Anthropic's list price (claude-3-5-sonnet: $3 in, $15 out per million)
        assert r["cost_nanousd"] == r["prompt_tokens"] * 3000 + r["completion_tokens"] * 15000, r
    dump = json.dumps(rows)
    assert MOCK_AWS_CREDENTIALS.secret_access_key not in dump and "session-token-secret" not in dump
    assert "client-token" not in dump  # the client's own x-amz-security-token is redacted too


def test_unified_stream_with_a_corrupt_frame_ends_with_an_error(client: openai.OpenAI, up: MockUpstreamThread) -> None:
    """Frames arriving one by one: the chunks before the bad frame reach the client as they come,
    then the SDK raises the gateway's error event; the gateway goes on serving."""
    from fastgw.testing.mock_bedrock_azure import CORRUPT_MODEL

    up.mock.chunk_delay_ms = 30.0  # one frame per write, so the good ones are relayed first
    got: list[str] = []
    try:
        with pytest.raises(openai.APIError) as info:
            for chunk in client.chat.completions.create(model=f"bedrock/{CORRUPT_MODEL}", stream=True,
                                                        messages=[{"role": "user", "content": "hi"}]):
                got += [chunk.choices[0].delta.content or ""] if chunk.choices else []
    finally:
        up.mock.chunk_delay_ms = 0.0
    assert got == ["", _pieces(1)]  # messageStart and the first delta
    assert "broken event stream" in info.value.message and "CRC" in info.value.message
    r = client.chat.completions.create(model=f"bedrock/{MODEL}", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == _pieces(4)


def test_unified_stream_corrupt_in_one_write_is_a_clean_error(client: openai.OpenAI) -> None:
    """The mock writes the whole (broken) answer at once. When it is all in before the head is
    answered (the usual case on loopback) nothing has gone to the client, which gets an
    OpenAI-shaped 502; otherwise the stream ends with the error event. Either way a clean error."""
    from fastgw.testing.mock_bedrock_azure import CORRUPT_MODEL

    with pytest.raises(openai.APIError) as info:
        list(client.chat.completions.create(model=f"bedrock/{CORRUPT_MODEL}", stream=True,
                                            messages=[{"role": "user", "content": "hi"}]))
    assert "message CRC mismatch" in info.value.message
    if isinstance(info.value, openai.APIStatusError):
        assert info.value.status_code == 502


def test_gateway_keys_use_the_gateways_aws_credentials(up: MockUpstreamThread, tmp_path: Any) -> None:
    """A gateway key needs no grant for Bedrock (the gateway signs), and is never forwarded."""
    cfg = gateway_config(up.url, providers={"bedrock": {"base_url": up.url}},
                         keys={"backend": f"sqlite://{tmp_path}/keys.db", "cache_ttl": 0.5})
    g = GatewayProcess(cfg, tmp_path, env=AWS_ENV)
    try:
        out = subprocess.run([sys.executable, "-m", "fastgw", "keys", "create", "--name", "k", "--config",
                              str(g.config_path)], check=True, capture_output=True, text=True, timeout=30)
        key = out.stdout.strip()
        assert key.startswith("fgw-")
        c = sdk(openai.OpenAI(base_url=g.url + "/v1", api_key=key, max_retries=0, timeout=10))
        r = c.chat.completions.create(model=f"bedrock/{MODEL}", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content == _pieces(4)
        c.close()
        req = urllib.request.Request(g.url + f"/bedrock/model/{MODEL}/converse", data=json.dumps(CONVERSE).encode(),
                                     method="POST", headers={"content-type": "application/json",
                                                             "authorization": f"Bearer {key}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
        for sent in list(up.mock.requests)[-2:]:
            assert_signed_by_gateway(sent)
            assert not any("fgw-" in v for _, v in sent.headers)
    finally:
        assert g.stop() == 0, g.log()


def test_passthrough_resigned_on_the_pure_header_parser(up: MockUpstreamThread, tmp_path: Any) -> None:
    g = GatewayProcess(gateway_config(up.url, providers={"bedrock": {"base_url": up.url}}), tmp_path, env=AWS_ENV,
                       pure=True)
    try:
        status, _, body = _post(g, f"/bedrock/model/{MODEL}/converse", CONVERSE)
        assert status == 200, body
        sent = last(up)
        assert_signed_by_gateway(sent)
        assert sent.header("x-amz-security-token") is None and sent.header("x-amz-date") != "20200101T000000Z"
    finally:
        assert g.stop() == 0, g.log()


def test_route_falls_back_from_bedrock_to_azure(up: MockUpstreamThread, tmp_path: Any) -> None:
    """A route whose Bedrock target fails (503, Bedrock's error shape) falls back across formats to an
    Azure deployment; the client sees one OpenAI answer and which target served."""
    from fastgw.testing.mock_bedrock_azure import MOCK_AZURE_API_KEY

    with MockUpstreamThread(status=503) as failing:
        cfg = gateway_config(up.url, providers={
            "bedrock": {"base_url": failing.url},
            "azure": {"base_url": up.url, "format": "azure"}},
            routes={"smart": {"strategy": "ordered", "targets": [
                {"provider": "bedrock", "model": MODEL},
                {"provider": "azure", "model": "gpt4o-prod", "api_key": MOCK_AZURE_API_KEY}]}})
        g = GatewayProcess(cfg, tmp_path, env=AWS_ENV)
        try:
            c = sdk(openai.OpenAI(base_url=g.url + "/v1", api_key="sk-client-key", max_retries=0, timeout=10))
            raw = c.chat.completions.with_raw_response.create(model="smart", messages=[{"role": "user", "content": "hi"}])
            assert raw.headers["helicone-fallback-index"] == "1"
            assert raw.parse().choices[0].message.content == _pieces(4)
            tried = failing.mock.requests[-1]
            assert tried.path == SENT_PATH + "/converse"
            assert_signed_by_gateway(tried)  # the mock checked the signature before answering 503
            served = last(up)
            assert served.path.startswith("/openai/deployments/gpt4o-prod/chat/completions?api-version=")
            assert served.header("api-key") == MOCK_AZURE_API_KEY
            c.close()
        finally:
            assert g.stop() == 0, g.log()
