"""The official SDKs, pointed at the gateway by base_url alone, behave as they do direct.

Each test runs against a gateway on the compiled extension and one on the pure-Python twins.
"""

from __future__ import annotations

import re
import time
from typing import Iterator

import anthropic
import openai
import pytest

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, chat_request, connect, gateway_config, read_responses

MSGS = [{"role": "user", "content": "hello there"}]
CLAUDE = "claude-sonnet-4-6"  # not a deprecated name: the SDK warns on those, and warnings are errors


@pytest.fixture(scope="module", params=["cython", "pure"])
def gw(request: pytest.FixtureRequest, mock: MockUpstreamThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(gateway_config(mock.url), tmp_path_factory.mktemp("sdk"), pure=request.param == "pure")
    yield g
    assert g.stop() == 0, g.log()


@pytest.fixture
def oai(gw: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def direct(mock: MockUpstreamThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=mock.url + "/v1", api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(gw: GatewayProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gw.url + "/anthropic", api_key="sk-ant-test", max_retries=0) as client:
        yield client


def test_chat_completion_matches_direct(oai: openai.OpenAI, direct: openai.OpenAI) -> None:
    via = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSGS)
    got = via.parse()
    want = direct.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert got.choices[0].message.content == want.choices[0].message.content
    assert got.usage == want.usage
    assert got.model == "gpt-4o-mini"
    # every response names its request and the gateway's own time
    assert len(via.headers["helicone-id"]) == 36
    assert via.headers["server-timing"].startswith("gateway;dur=")


def test_chat_stream_with_usage(oai: openai.OpenAI, direct: openai.OpenAI) -> None:
    def collect(client: openai.OpenAI) -> tuple[str, object]:
        text, usage = "", None
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, stream=True, stream_options={"include_usage": True}
        )
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                usage = chunk.usage
        return text, usage

    assert collect(oai) == collect(direct)
    assert collect(oai)[1] is not None


def test_embeddings_base64_and_float(oai: openai.OpenAI, direct: openai.OpenAI) -> None:
    got = oai.embeddings.create(model="text-embedding-3-small", input=["a", "bc"])
    want = direct.embeddings.create(model="text-embedding-3-small", input=["a", "bc"])
    assert [d.embedding for d in got.data] == [d.embedding for d in want.data]
    floats = oai.embeddings.create(model="text-embedding-3-small", input="a", encoding_format="float")
    assert floats.data[0].embedding == want.data[0].embedding


def test_responses_api_plain_and_streamed(oai: openai.OpenAI) -> None:
    resp = oai.responses.create(model="gpt-4.1-mini", input="hello")
    assert resp.output_text and resp.usage is not None
    events = [e.type for e in oai.responses.create(model="gpt-4.1-mini", input="hello", stream=True)]
    assert events[0] == "response.created" and events[-1] == "response.completed"
    assert "response.output_text.delta" in events


def test_anthropic_messages_plain_and_streamed(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model=CLAUDE, max_tokens=64, messages=MSGS)
    assert msg.content[0].text and msg.usage.output_tokens > 0
    with claude.messages.stream(model=CLAUDE, max_tokens=64, messages=MSGS) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == msg.content[0].text
    assert final.stop_reason == "end_turn"


def test_custom_provider_prefix_and_openai_prefix(gw: GatewayProcess, mock: MockUpstreamThread) -> None:
    for base in ("/local/v1", "/openai/v1"):
        with openai.OpenAI(base_url=gw.url + base, api_key="sk-test", max_retries=0) as client:
            out = client.chat.completions.create(model="m", messages=MSGS)
        assert out.choices[0].message.content
        assert mock.mock.requests[-1].path == "/v1/chat/completions"


def test_stream_chunks_arrive_as_produced(oai: openai.OpenAI) -> None:
    """With 150 ms between events, the first must arrive long before the last: nothing is held back."""
    start = time.perf_counter()
    arrivals = []
    stream = oai.chat.completions.create(
        model="gpt-4o-mini", messages=MSGS, stream=True,
        extra_headers={"x-mock-chunks": "4", "x-mock-chunk-delay-ms": "150"},
    )
    for _ in stream:
        arrivals.append(time.perf_counter() - start)
    assert len(arrivals) >= 5
    assert arrivals[0] < 0.12, arrivals
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:]) if b - a > 0.05]
    assert len(gaps) >= 4 and all(0.1 < g < 0.4 for g in gaps), arrivals


def test_upstream_errors_reach_the_sdk_unchanged(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(model="m", messages=MSGS, extra_headers={"x-mock-status": "429"})
    assert info.value.response.headers["retry-after"] == "1"
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model="m", messages=MSGS, extra_headers={"x-mock-status": "500"})


def test_stream_cut_by_upstream_ends_with_error_event(oai: openai.OpenAI) -> None:
    """The head is out when the upstream dies; the SDK gets a clean error, not a hang."""
    stream = oai.chat.completions.create(
        model="m", messages=MSGS, stream=True, extra_headers={"x-mock-reset": "mid", "x-mock-chunks": "6"}
    )
    got = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            got.append(chunk)
    assert got, "some chunks arrived before the cut"
    assert "upstream" in str(info.value)


def test_stream_usage_injection_is_invisible_to_the_client(oai: openai.OpenAI, direct: openai.OpenAI, mock: MockUpstreamThread) -> None:
    """Without include_usage the client sees exactly what it would direct; the upstream was asked for usage."""

    def chunks(client: openai.OpenAI) -> list[tuple[dict, set[str]]]:
        # to_dict() and model_fields_set hold only the keys the JSON had: a "usage":null that
        # include_usage adds to each chunk shows there, where model_dump() would fill it in anyway.
        return [({k: v for k, v in c.to_dict().items() if k not in ("id", "created")}, c.model_fields_set)
                for c in client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True)]

    via, want = chunks(oai), chunks(direct)
    assert via == want
    assert all(c["choices"] and "usage" not in c and "usage" not in fields for c, fields in via)
    sent = [r for r in list(mock.mock.requests) if r.path == "/v1/chat/completions"][-2:]
    assert sent[0].json()["stream_options"] == {"include_usage": True}  # via the gateway
    assert "stream_options" not in sent[1].json()  # direct


def _raw_stream(port: int, body: bytes) -> bytes:
    """The body of one streamed answer as it came over the socket, its ids and times made equal."""
    with connect(port) as sock:
        sock.sendall(chat_request(body, extra="Connection: close\r\n"))
        (response,) = read_responses(sock, 1)
    assert response.status == 200 and response.complete
    return re.sub(rb'"id":"chatcmpl-mock\d+","object":"chat.completion.chunk","created":\d+', b"", response.body)


@pytest.mark.parametrize("options", [b"", b',"stream_options":null', b',"stream_options":{"include_usage":false}'])
def test_injected_stream_bytes_equal_the_direct_stream(gw: GatewayProcess, mock: MockUpstreamThread, options: bytes) -> None:
    """Byte for byte: no usage chunk and no "usage":null member in the chunks the client gets."""
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true' + options + b"}"
    via = _raw_stream(gw.port, body)
    assert mock.mock.requests[-1].json()["stream_options"]["include_usage"] is True  # it was injected
    direct = _raw_stream(int(mock.url.rsplit(":", 1)[1]), body)
    assert via == direct and via.count(b"data: ") >= 4 and b"usage" not in via


def test_client_that_asked_for_usage_still_gets_it(oai: openai.OpenAI) -> None:
    got = list(oai.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True,
                                           stream_options={"include_usage": True}))
    assert got[-1].choices == [] and got[-1].usage is not None
