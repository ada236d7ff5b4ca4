"""The mock upstream must satisfy the official SDKs unchanged: it is the stand-in
for OpenAI and Anthropic in every other test and benchmark, so a wire-format
mistake here would silently invalidate them."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.error
import urllib.request

import pytest

import anthropic
import openai

from fastgw.testing.mock_upstream import MockUpstream, MockUpstreamThread

MSGS = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def upstream():
    with MockUpstreamThread() as up:
        yield up


@pytest.fixture
def oai(upstream):
    upstream.mock.requests.clear()
    with openai.OpenAI(base_url=upstream.url + "/v1", api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def ant(upstream):
    upstream.mock.requests.clear()
    with anthropic.Anthropic(base_url=upstream.url, api_key="sk-ant-test", max_retries=0) as client:
        yield client


def raw_http(port: int, data: bytes, *, expect_responses: int = 1, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until `expect_responses` complete bodies of the test requests arrived."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        while buf.count(b"HTTP/1.1 ") < expect_responses or not buf.endswith((b"}", b"0\r\n\r\n")):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf


# ------------------------------------------------------------------ OpenAI chat


def test_chat_completion_plain(oai, upstream):
    r = oai.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert r.model == "gpt-4o-mini"
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "Hello from the mock upstream"
    assert r.choices[0].finish_reason == "stop"
    body = upstream.mock.requests[-1].body
    assert r.usage.prompt_tokens == max(1, len(body) // 4)
    assert r.usage.completion_tokens == 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + 5


def test_chat_completion_streamed_with_usage(oai, upstream):
    plain = oai.chat.completions.create(model="gpt-4o", messages=MSGS, extra_headers={"x-mock-chunks": "7"})
    stream = oai.chat.completions.create(
        model="gpt-4o", messages=MSGS, stream=True, stream_options={"include_usage": True},
        extra_headers={"x-mock-chunks": "7"},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-4o" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == plain.usage.completion_tokens == 7
    assert last.usage.prompt_tokens == max(1, len(upstream.mock.requests[-1].body) // 4)
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_usage_has_no_usage_chunk(oai):
    chunks = list(oai.chat.completions.create(model="m", messages=MSGS, stream=True))
    assert all(c.choices for c in chunks)
    assert len(chunks) == 1 + 5 + 1  # role, pieces, finish


def test_chat_chunk_bytes(oai):
    r = oai.chat.completions.create(model="m", messages=MSGS,
                                    extra_headers={"x-mock-chunks": "3", "x-mock-chunk-bytes": "1000"})
    assert len(r.choices[0].message.content) == 3000
    pieces = [c.choices[0].delta.content for c in oai.chat.completions.create(
        model="m", messages=MSGS, stream=True, extra_headers={"x-mock-chunks": "3", "x-mock-chunk-bytes": "1000"})
        if c.choices and c.choices[0].delta.content]
    assert [len(p) for p in pieces] == [1000, 1000, 1000]


def test_echo_headers(oai):
    raw = oai.chat.completions.with_raw_response.create(
        model="m", messages=MSGS, extra_headers={"x-mock-echo-headers": "1", "x-custom": "abc"})
    received = dict(map(tuple, raw.http_response.json()["mock_received_headers"]))
    assert received["x-custom"] == "abc"
    assert received["authorization"] == "Bearer sk-test"


# ------------------------------------------------------------------ embeddings, models


def test_embeddings_base64_default_and_float(oai):
    default = oai.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    floats = oai.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"], encoding_format="float")
    assert default.model == "text-embedding-3-small"
    assert [e.index for e in default.data] == [0, 1]
    assert all(len(e.embedding) == 8 for e in default.data)
    assert [e.embedding for e in default.data] == [e.embedding for e in floats.data]
    assert default.data[0].embedding != default.data[1].embedding
    single = oai.embeddings.create(model="e", input="alpha", encoding_format="float")
    assert len(single.data) == 1 and single.data[0].embedding == floats.data[0].embedding
    assert single.usage.prompt_tokens > 0


def test_models_list(oai, ant):
    assert "gpt-4o-mini" in [m.id for m in oai.models.list()]
    assert all(m.id.startswith("claude") for m in ant.models.list())


# ------------------------------------------------------------------ responses


def test_responses_plain(oai):
    r = oai.responses.create(model="gpt-4o-mini", input="hi")
    assert r.model == "gpt-4o-mini" and r.status == "completed"
    assert r.output_text == "Hello from the mock upstream"
    assert r.usage.output_tokens == 5 and r.usage.total_tokens == r.usage.input_tokens + 5


def test_responses_streamed_events(oai):
    events = list(oai.responses.create(model="gpt-4o-mini", input="hi", stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    for t in ("response.output_item.added", "response.content_part.added", "response.output_text.done",
              "response.content_part.done", "response.output_item.done"):
        assert t in types
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Hello from the mock upstream"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].response.usage.output_tokens == len(deltas) == 5


def test_responses_stream_helper(oai):
    with oai.responses.stream(model="gpt-4o-mini", input="hi", extra_headers={"x-mock-chunks": "3"}) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Hello from the"
    assert final.usage.output_tokens == 3


# ------------------------------------------------------------------ anthropic


def test_anthropic_messages_plain(ant, upstream):
    m = ant.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MSGS)
    assert m.model == "claude-sonnet-4-6" and m.role == "assistant"
    assert m.content[0].type == "text" and m.content[0].text == "Hello from the mock upstream"
    assert m.stop_reason == "end_turn"
    assert m.usage.output_tokens == 5
    assert m.usage.input_tokens == max(1, len(upstream.mock.requests[-1].body) // 4)
    assert upstream.mock.requests[-1].path == "/v1/messages"
    rec = upstream.mock.requests[-1]
    # anthropic 2.x sends the API key as a bearer token; older SDKs used x-api-key
    assert "sk-ant-test" in (rec.header("x-api-key"), rec.header("authorization", "").removeprefix("Bearer "))
    assert rec.header("anthropic-version")


def test_anthropic_messages_stream_helper(ant):
    with ant.messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=MSGS) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text == "Hello from the mock upstream"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5 and final.usage.input_tokens > 0


def test_anthropic_raw_stream_event_types(ant):
    events = list(ant.messages.create(model="c", max_tokens=8, messages=MSGS, stream=True,
                                      extra_headers={"x-mock-chunks": "2"}))
    assert [e.type for e in events] == ["message_start", "content_block_start", "content_block_delta",
                                        "content_block_delta", "content_block_stop", "message_delta", "message_stop"]


# ------------------------------------------------------------------ faults


def test_status_429_maps_to_rate_limit_error(oai, ant):
    with pytest.raises(openai.RateLimitError) as exc:
        oai.chat.completions.create(model="m", messages=MSGS, extra_headers={"x-mock-status": "429"})
    assert exc.value.response.headers["retry-after"] == "1"
    assert exc.value.code == "rate_limit_exceeded"
    with pytest.raises(anthropic.RateLimitError) as aexc:
        ant.messages.create(model="c", max_tokens=8, messages=MSGS, extra_headers={"x-mock-status": "429"})
    assert aexc.value.body["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(("status", "exc_type"), [
    (400, openai.BadRequestError), (401, openai.AuthenticationError), (500, openai.InternalServerError),
])
def test_status_mapping(oai, status, exc_type):
    with pytest.raises(exc_type) as exc:
        oai.chat.completions.create(model="m", messages=MSGS, extra_headers={"x-mock-status": str(status)})
    assert exc.value.status_code == status


def test_unknown_path_is_openai_shaped_404(upstream):
    req = urllib.request.Request(upstream.url + "/v1/nope", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=5)
    with exc.value as resp:
        body = resp.read()
    assert exc.value.code == 404
    assert set(openai_error_keys(body)) >= {"message", "type", "code"}


def openai_error_keys(body: bytes) -> list[str]:
    import json
    return list(json.loads(body)["error"])


def test_reset_before(oai, upstream):
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="m", messages=MSGS, extra_headers={"x-mock-reset": "before"})
    assert upstream.mock.requests[-1].header("x-mock-reset") == "before"


def test_reset_mid_stream(oai):
    got: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for c in oai.chat.completions.create(model="m", messages=MSGS, stream=True,
                                             extra_headers={"x-mock-reset": "mid", "x-mock-chunks": "10"}):
            got.append(c.choices[0].delta.content or "")
    assert 1 <= len(got) < 12


def test_latency(oai):
    t0 = time.perf_counter()
    oai.chat.completions.create(model="m", messages=MSGS, extra_headers={"x-mock-latency-ms": "150"})
    assert time.perf_counter() - t0 >= 0.15


def test_slow_stream_chunk_timing(oai):
    t0 = time.perf_counter()
    arrivals = []
    for c in oai.chat.completions.create(model="m", messages=MSGS, stream=True,
                                         extra_headers={"x-mock-chunk-delay-ms": "50", "x-mock-chunks": "4"}):
        if c.choices and c.choices[0].delta.content:
            arrivals.append(time.perf_counter() - t0)
    assert len(arrivals) == 4
    assert arrivals[-1] - arrivals[0] >= 0.12  # three 50 ms gaps between first and last piece
    assert arrivals[0] < arrivals[-1] / 2


# ------------------------------------------------------------------ recording, HTTP details


def test_request_recording(oai, upstream):
    upstream.mock.requests.clear()
    oai.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_headers={"x-trace": "t-1"})
    (rec,) = upstream.mock.requests
    assert rec.method == "POST" and rec.path == "/v1/chat/completions"
    assert rec.json() == {"model": "gpt-4o-mini", "messages": MSGS}
    assert rec.header("authorization") == "Bearer sk-test"
    assert rec.header("X-Trace") == "t-1"
    assert all(name == name.lower() for name, _ in rec.headers)
    assert upstream.mock.connections_opened >= 1 and upstream.mock.connections_open >= 1


def test_chunked_request_body_and_pipelining(upstream):
    body = b'{"model":"pipelined","messages":[]}'
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
    req1 = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
            b"x-mock-latency-ms: 50\r\n\r\n" + chunked + b"0\r\n\r\n")
    req2 = b"GET /__mock/health HTTP/1.1\r\nhost: x\r\n\r\n"
    out = raw_http(upstream.port, req1 + req2, expect_responses=2)
    first, second = out.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200") and b'"model":"pipelined"' in first
    assert second.startswith(b"200") and second.endswith(b'{"ok":true}')
    assert upstream.mock.requests[-1].body == body


def test_sse_uses_chunked_transfer_encoding(upstream):
    req = (b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 15\r\n"
           b"connection: close\r\n\r\n{\"stream\":true}")
    out = raw_http(upstream.port, req)
    head = out.split(b"\r\n\r\n", 1)[0].lower()
    assert b"transfer-encoding: chunked" in head and b"text/event-stream" in head
    assert out.endswith(b"0\r\n\r\n")


def test_async_start_stop_with_async_client():
    async def main():
        mock = MockUpstream(chunks=2)
        port = await mock.start()
        try:
            async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test",
                                          max_retries=0) as client:
                r = await client.chat.completions.create(model="m", messages=MSGS)
                stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
                text = "".join([c.choices[0].delta.content or "" async for c in stream])
        finally:
            await mock.stop()
        return r, text, mock

    r, text, mock = asyncio.run(main())
    assert r.choices[0].message.content == text == "Hello from"
    assert mock.connections_open == 0 and mock.request_count == 2
