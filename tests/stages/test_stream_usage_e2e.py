"""Stream usage injection end to end: raw sockets and the openai SDK -> a real gateway -> the mock.

What the upstream gets (the client's body with include_usage spliced in, or the body untouched),
what the client gets back (the bytes it would have got direct), and what the log keeps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, RawResponse, chat_request, connect, gateway_config, read_responses

CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true'


@pytest.fixture(scope="module")
def up() -> Iterator[MockUpstreamThread]:
    with MockUpstreamThread(chunks=2) as m:
        yield m


@pytest.fixture(scope="module")
def gw(up: MockUpstreamThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    cfg = gateway_config(up.url, providers={"groq": {"base_url": up.url}, "mistral": {"base_url": up.url}},
                         logging={"batch_max_age": 0.2})
    g = GatewayProcess(cfg, tmp_path_factory.mktemp("stream_usage"))
    yield g
    assert g.stop() == 0, g.log()


def post(port: int, body: bytes, path: str = "/v1/chat/completions", extra: str = "") -> RawResponse:
    with connect(port) as sock:
        sock.sendall(chat_request(body, path, extra=extra + "Connection: close\r\n"))
        (response,) = read_responses(sock, 1)
    assert response.complete
    return response


def same_ids(body: bytes) -> bytes:
    return re.sub(rb'"id":"chatcmpl-mock\d+","object":"chat.completion.chunk","created":\d+', b"", body)


def last(up: MockUpstreamThread) -> Any:
    return up.mock.requests[-1]


@pytest.mark.parametrize("value", [b'"true"', b"1", b"[]", b'{"include_usage":"true"}', b'{"include_usage":1}',
                                   b'{"include_usage":null}', b'{"include_usage":true}'])
def test_odd_stream_options_go_upstream_as_sent(gw: GatewayProcess, up: MockUpstreamThread, value: bytes) -> None:
    """include_usage already on, or a value the provider judges itself: the gateway neither
    rewrites the body nor filters the answer; the client gets what it would direct."""
    body = CHAT + b',"stream_options":' + value + b"}"
    via = post(gw.port, body)
    assert last(up).body == body
    direct = post(int(up.url.rsplit(":", 1)[1]), body)
    assert (via.status, same_ids(via.body)) == (direct.status, same_ids(direct.body))


def test_big_integers_and_spacing_reach_the_upstream_unchanged(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    schema = b'"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":' \
             b'{"id":{"type":"integer","maximum":123456789012345678901234567890,"enum":[18446744073709551617]}}}}}]'
    body = CHAT + b', "temperature": 1E0,\n ' + schema + b"\n}\n"
    assert post(gw.port, body).status == 200
    assert last(up).body == CHAT + b', "temperature": 1E0,\n ' + schema + b'\n,"stream_options":{"include_usage":true}}\n'
    changed = CHAT + b',"stream_options":{"include_usage":false},' + schema + b"}"
    assert post(gw.port, changed).status == 200
    sent = last(up).body
    assert json.loads(sent) == {**json.loads(changed), "stream_options": {"include_usage": True}}
    assert b"123456789012345678901234567890" in sent and b"[18446744073709551617]" in sent


@pytest.mark.parametrize("options", ['"x"', "5", "true", "[]"])
def test_unified_api_with_non_object_stream_options(gw: GatewayProcess, up: MockUpstreamThread, options: str) -> None:
    """An OpenAI-format provider of the unified API gets the client's value, not a 500."""
    body = b'{"model":"groq/llama-3.1-8b-instant","messages":[{"role":"user","content":"hi"}],"stream":true,' \
           b'"stream_options":' + options.encode() + b"}"
    response = post(gw.port, body)
    assert response.status == 200, response.body
    assert last(up).json()["stream_options"] == json.loads(options)
    assert b"data: [DONE]" in response.body


def test_injected_requests_ask_for_an_uncompressed_answer(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    """The usage filter reads plain SSE: the client's Accept-Encoding is not forwarded when injecting."""
    post(gw.port, CHAT + b"}", extra="Accept-Encoding: gzip, br\r\n")
    assert last(up).json()["stream_options"] == {"include_usage": True}
    assert [v for k, v in last(up).headers if k == "accept-encoding"] == ["identity"]
    post(gw.port, CHAT + b',"stream_options":{"include_usage":true}}', extra="Accept-Encoding: gzip, br\r\n")
    assert [v for k, v in last(up).headers if k == "accept-encoding"] == ["gzip, br"]  # not injected: as sent


def test_mistral_is_never_asked_for_stream_usage(gw: GatewayProcess, up: MockUpstreamThread) -> None:
    """Reported to answer 422 to stream_options (providers/catalog.py): neither path adds it."""
    msgs = [{"role": "user", "content": "hi"}]
    for base, model in ((gw.url + "/mistral/v1", "mistral-large-latest"), (gw.url + "/v1", "mistral/mistral-large-latest")):
        with openai.OpenAI(base_url=base, api_key="sk-test", max_retries=0) as client:
            chunks = list(client.chat.completions.create(model=model, messages=msgs, stream=True))
        assert "stream_options" not in last(up).json() and last(up).path == "/v1/chat/completions"
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from"


def test_the_log_keeps_the_body_the_client_sent(up: MockUpstreamThread, tmp_path_factory: pytest.TempPathFactory) -> None:
    gw = GatewayProcess(gateway_config(up.url, logging={"batch_max_age": 0.2}), tmp_path_factory.mktemp("log"))
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": true}'
    try:
        assert post(gw.port, body).status == 200
        assert last(up).json()["stream_options"] == {"include_usage": True}
    finally:
        assert gw.stop() == 0, gw.log()
    rows = [json.loads(line) for f in (gw.log_dir / "sink").glob("requests*.jsonl") for line in f.read_text().splitlines()]
    (row,) = [r for r in rows if r.get("stream")]
    assert row["request_body"] == body.decode()
    assert row["completion_tokens"] == 2 and row["usage_source"] == "provider"


def test_a_route_asks_each_target_as_its_provider_allows(up: MockUpstreamThread,
                                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    """A route is resolved after the stage injected: each target gets the client's stream_options,
    with include_usage added only where the provider takes it."""
    cfg = gateway_config(up.url, providers={"groq": {"base_url": up.url}, "mistral": {"base_url": up.url}},
                         routes={"to-mistral": {"targets": [{"provider": "mistral", "model": "mistral-large-latest"}]},
                                 "to-groq": {"targets": [{"provider": "groq", "model": "llama-3.1-8b-instant"}]}})
    gw = GatewayProcess(cfg, tmp_path_factory.mktemp("routes"))
    try:
        with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
            for model, sent in (("to-mistral", None), ("to-groq", {"include_usage": True})):
                chunks = list(client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                                             stream=True))
                assert last(up).json().get("stream_options") == sent, model
                assert all(c.choices for c in chunks) and "usage" not in chunks[0].model_fields_set
    finally:
        assert gw.stop() == 0, gw.log()
