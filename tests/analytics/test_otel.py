"""OpenTelemetry spans, received by a real OTLP/HTTP endpoint started inside the test.

The receiver is a plain HTTP server that decodes ``ExportTraceServiceRequest`` protobuf bodies
(the opentelemetry-proto package), as a collector does. The spans come from a real ``fastgw
serve`` (its exporter process runs the SDK) in front of the mock providers, a real retried and
fallen-back route included; the exact attempt timings and the re-send case use records given to
the same SpanExporter directly.
"""

from __future__ import annotations

import gzip
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from fastgw.analytics.otel import SpanExporter, span_id_for
from fastgw.config import OtelConfig
from fastgw.requestlog.enrich import Enricher
from fastgw.requestlog.prices import PriceTable
from fastgw.requestlog.record import decode_record, encode_record
from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, gateway_config

MSGS = [{"role": "user", "content": "hello there"}]
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@dataclass
class ReceivedSpan:
    span: Span
    resource: dict[str, Any]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()


class OTLPReceiver:
    """POST /v1/traces, decoded; every span kept with its resource's attributes."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                ok = self.path == "/v1/traces" and self.headers.get("content-type") == "application/x-protobuf"
                if ok:
                    receiver.take(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 400)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def take(self, request: ExportTraceServiceRequest) -> None:
        with self.lock:
            self.requests += 1
            for rs in request.resource_spans:
                resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        attrs = {a.key: _value(a.value) for a in span.attributes}
                        self.spans.append(ReceivedSpan(span, resource, attrs))

    def wait_for(self, count: int, timeout: float = 15.0) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.spans) >= count:
                    return list(self.spans)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.spans)} spans received, wanted {count}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    r = OTLPReceiver()
    yield r
    r.close()


def traced_gateway(start_gateway: Any, mock: MockUpstreamThread, receiver: OTLPReceiver, **otel: Any) -> GatewayProcess:
    return start_gateway(gateway_config(mock.url, otel={
        "enabled": True, "endpoint": receiver.endpoint, "service_name": "gw-under-test",
        "headers": {"x-collector-token": "t0k"}, **otel,
    }))


def send(gw: GatewayProcess) -> dict[str, Any]:
    """Four requests: JSON with parameters, a stream, an upstream error, one inside a caller's trace."""
    out: dict[str, Any] = {"t0": time.time_ns()}
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSGS, temperature=0.2,
                                                               max_tokens=7)
        out["json_id"], out["json_text"] = raw.headers["helicone-id"], raw.parse().choices[0].message.content
        with client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MSGS, stream=True) as r:
            out["stream_id"] = r.headers["helicone-id"]
            list(r.parse())
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_headers={"x-mock-status": "500"})
        except openai.InternalServerError as exc:
            out["error_id"] = exc.response.headers["helicone-id"]
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MSGS, extra_headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
        out["child_id"] = raw.headers["helicone-id"]
    out["t1"] = time.time_ns()
    return out


def by_request(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.attrs["fastgw.request_id"]: s for s in spans}


def test_one_span_per_proxied_request_with_genai_attributes(start_gateway, mock, receiver) -> None:  # type: ignore[no-untyped-def]
    gw = traced_gateway(start_gateway, mock, receiver)
    sent = send(gw)
    assert gw.stop() == 0, gw.log()  # the exporter's shutdown sends what its span processor holds
    spans = by_request(receiver.wait_for(4))
    assert len(spans) == 4 and len(receiver.spans) == 4

    plain = spans[sent["json_id"]]
    s, a = plain.span, plain.attrs
    assert plain.resource["service.name"] == "gw-under-test"
    assert s.name == "chat gpt-4o-mini" and s.kind == Span.SpanKind.SPAN_KIND_CLIENT
    # No traceparent: the trace id is the request id (Helicone-Id), and the span is a root.
    assert s.trace_id == uuid.UUID(sent["json_id"]).bytes and s.parent_span_id == b""
    assert s.span_id == span_id_for(sent["json_id"]).to_bytes(8, "big")
    assert sent["t0"] - 2_000_000 <= s.start_time_unix_nano < s.end_time_unix_nano <= sent["t1"] + 2_000_000
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini" and a["gen_ai.response.model"]
    assert a["gen_ai.request.temperature"] == 0.2 and a["gen_ai.request.max_tokens"] == 7
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] == 5
    assert a["http.response.status_code"] == 200 and "error.type" not in a
    assert a["fastgw.cost_usd"] > 0
    assert s.status.code == Status.StatusCode.STATUS_CODE_UNSET
    # Content is opt-in: none of it by default.
    assert not any(k.startswith(("gen_ai.input", "gen_ai.output", "gen_ai.system_instructions")) for k in a)

    stream = spans[sent["stream_id"]]
    assert stream.attrs["fastgw.stream"] is True and stream.attrs["gen_ai.usage.output_tokens"] == 5
    assert stream.attrs["fastgw.ttfb_us"] > 0
    assert "gen_ai.request.temperature" not in stream.attrs

    error = spans[sent["error_id"]]
    assert error.span.status.code == Status.StatusCode.STATUS_CODE_ERROR
    assert error.attrs["error.type"] == "500" and error.attrs["http.response.status_code"] == 500

    child = spans[sent["child_id"]]
    assert child.trace_id == CALLER_TRACE and child.span.parent_span_id.hex() == CALLER_SPAN
    assert child.attrs["fastgw.request_id"] == sent["child_id"]


def test_content_is_sent_only_when_opted_in(start_gateway, mock, receiver) -> None:  # type: ignore[no-untyped-def]
    gw = traced_gateway(start_gateway, mock, receiver, capture_content=True)
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS).choices[0].message.content
        streamed = "".join(c.choices[0].delta.content or "" for c in
                           client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True) if c.choices)
    assert gw.stop() == 0, gw.log()
    spans = receiver.wait_for(2)
    outputs = sorted(s.attrs["gen_ai.output.messages"] for s in spans)
    import orjson

    for s in spans:
        assert orjson.loads(s.attrs["gen_ai.input.messages"]) == [
            {"role": "user", "parts": [{"type": "text", "content": "hello there"}]}]
    texts = sorted(orjson.loads(o)[0]["parts"][0]["content"] for o in outputs)
    assert texts == sorted([answer, streamed]) and all(texts)


def test_retries_and_fallbacks_become_child_spans(receiver) -> None:  # type: ignore[no-untyped-def]
    """A worker's raw record with ``attempts`` (as the routing stage fills them), enriched as the
    exporter does, becomes a request span with one child per attempt."""
    rid = str(uuid.uuid4())
    start = 1_763_900_000_250  # created_at_ms
    meta = {
        "kind": "request", "request_id": rid, "created_at_ms": start, "total_us": 900_000, "ttfb_us": 880_000,
        "gateway_us": 90, "method": "POST", "path": "/v1/chat/completions", "provider": "anthropic",
        "format": "openai", "status": 200, "retry_count": 1, "fallback_index": 0,
        "response_content_type": "application/json", "target_model": "claude-sonnet-4-6",
        "attempts": [
            {"target": "openai/gpt-4o", "status": 503, "error": "", "start_us": 100, "dur_us": 20_000, "fallback_index": -1},
            {"target": "openai/gpt-4o", "status": 0, "error": "upstream_timeout", "start_us": 150_000, "dur_us": 300_000,
             "fallback_index": -1},
            {"target": "anthropic/claude-sonnet-4-6", "status": 200, "error": "", "start_us": 460_000, "dur_us": 430_000,
             "fallback_index": 0},
        ],
    }
    request = b'{"model":"gpt-4o","messages":[{"role":"user","content":"secret prompt"}]}'
    response = (b'{"model":"claude-sonnet-4-6","choices":[{"message":{"content":"secret answer"}}],'
                b'"usage":{"prompt_tokens":12,"completion_tokens":3}}')
    row = Enricher(PriceTable.load(None)).row(decode_record(encode_record(meta, request, response)))
    exporter = SpanExporter(OtelConfig(enabled=True, endpoint=receiver.endpoint))
    exporter.observe([row, {"kind": "feedback", "request_id": rid, "rating": True}])
    exporter.close()
    spans = receiver.wait_for(4)
    assert len(spans) == 4
    (parent,) = [s for s in spans if s.span.parent_span_id == b""]
    kids = sorted((s for s in spans if s.span.parent_span_id), key=lambda s: s.span.start_time_unix_nano)
    t0 = 1_763_900_000_250_000_000
    assert parent.span.name == "chat gpt-4o" and parent.span.trace_id == uuid.UUID(rid).bytes
    assert (parent.span.start_time_unix_nano, parent.span.end_time_unix_nano) == (t0, t0 + 900_000_000)
    assert parent.attrs["fastgw.retry_count"] == 1 and parent.attrs["fastgw.fallback_index"] == 0
    assert parent.attrs["gen_ai.request.model"] == "gpt-4o" and parent.attrs["gen_ai.response.model"] == "claude-sonnet-4-6"
    assert (parent.attrs["gen_ai.usage.input_tokens"], parent.attrs["gen_ai.usage.output_tokens"]) == (12, 3)
    assert [k.span.parent_span_id for k in kids] == [parent.span.span_id] * 3
    assert [k.span.trace_id for k in kids] == [parent.span.trace_id] * 3
    assert [k.span.name for k in kids] == ["chat gpt-4o", "chat gpt-4o", "chat claude-sonnet-4-6"]
    assert [k.attrs["gen_ai.provider.name"] for k in kids] == ["openai", "openai", "anthropic"]
    assert [k.attrs["fastgw.fallback_index"] for k in kids] == [-1, -1, 0]
    assert [(k.span.start_time_unix_nano - t0, k.span.end_time_unix_nano - t0) for k in kids] == [
        (100_000, 20_100_000), (150_000_000, 450_000_000), (460_000_000, 890_000_000)]
    assert [k.span.status.code for k in kids] == [Status.StatusCode.STATUS_CODE_ERROR] * 2 + [Status.StatusCode.STATUS_CODE_UNSET]
    assert [k.attrs.get("error.type") for k in kids] == ["503", "upstream_timeout", None]
    assert "http.response.status_code" not in kids[1].attrs  # a timeout had no answer
    assert all("secret" not in str(s.attrs) for s in spans)  # capture_content is off


def test_a_resent_batch_gives_the_same_span_ids(receiver) -> None:  # type: ignore[no-untyped-def]
    rid = str(uuid.uuid4())
    row = {"kind": "request", "request_id": rid, "created_at": 1_763_900_000.0, "total_us": 1000,
           "path": "/v1/embeddings", "provider": "openai", "model_requested": "text-embedding-3-small", "status": 200,
           "attempts": [{"target": "openai/text-embedding-3-small", "status": 200, "error": "", "start_us": 5,
                         "dur_us": 900, "fallback_index": -1}]}
    for _ in range(2):  # two exporter processes: the first crashed after sending, before its commit
        exporter = SpanExporter(OtelConfig(enabled=True, endpoint=receiver.endpoint))
        exporter.observe([row])
        exporter.close()
    spans = receiver.wait_for(4)
    ids = sorted((s.span.trace_id, s.span.span_id) for s in spans)
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]
    assert {s.span.name for s in spans} == {"embeddings text-embedding-3-small"}


def test_a_real_fallback_has_one_child_span_per_attempt(start_gateway, receiver) -> None:  # type: ignore[no-untyped-def]
    """Route "smart": target a (503, retried once) then target b; the spans come from the gateway."""
    with MockUpstreamThread() as a, MockUpstreamThread() as b:
        a.mock.status = 503
        gw = start_gateway({
            "providers": {"a": {"base_url": a.url}, "b": {"base_url": b.url}, "openai": {"base_url": a.url}},
            "routes": {"smart": {"targets": [{"provider": "a", "model": "gpt-4o-mini", "api_key": "sk-a"},
                                             {"provider": "b", "model": "gpt-4o", "api_key": "sk-b"}]}},
            "otel": {"enabled": True, "endpoint": receiver.endpoint},
        })
        retry = {"Helicone-Retry-Enabled": "true", "Helicone-Retry-Num": "1", "Helicone-Retry-Min-Timeout": "10",
                 "Helicone-Retry-Max-Timeout": "3000"}
        with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client", max_retries=0, default_headers=retry) as c:
            raw = c.chat.completions.with_raw_response.create(model="smart", messages=MSGS)
        rid = raw.headers["helicone-id"]
        assert raw.parse().model == "gpt-4o"
        assert gw.stop() == 0, gw.log()
    spans = receiver.wait_for(4)
    (parent,) = [s for s in spans if not s.span.parent_span_id]
    kids = sorted((s for s in spans if s.span.parent_span_id), key=lambda s: s.span.start_time_unix_nano)
    assert parent.span.trace_id == uuid.UUID(rid).bytes and parent.span.name == "chat smart"
    assert parent.attrs["gen_ai.response.model"] == "gpt-4o" and parent.attrs["fastgw.retry_count"] == 1
    assert parent.attrs["fastgw.fallback_index"] == 0
    assert [(k.attrs["gen_ai.provider.name"], k.attrs["gen_ai.request.model"], k.attrs["http.response.status_code"],
             k.attrs["fastgw.fallback_index"]) for k in kids] == [
        ("a", "gpt-4o-mini", 503, -1), ("a", "gpt-4o-mini", 503, -1), ("b", "gpt-4o", 200, 0)]
    assert all(k.span.parent_span_id == parent.span.span_id and k.span.trace_id == parent.span.trace_id for k in kids)
    p = parent.span
    assert all(p.start_time_unix_nano <= k.span.start_time_unix_nano < k.span.end_time_unix_nano
               <= p.end_time_unix_nano + 1_000_000 for k in kids)  # created_at is kept to the millisecond
    # the backoff between the two attempts on a
    assert kids[1].span.start_time_unix_nano >= kids[0].span.end_time_unix_nano + 5_000_000
    assert [k.span.status.code for k in kids] == [Status.StatusCode.STATUS_CODE_ERROR] * 2 + [Status.StatusCode.STATUS_CODE_UNSET]


def test_an_int_beyond_64_bits_keeps_its_attribute() -> None:
    """OTLP ints are signed 64-bit; a client's huge seed becomes a float instead of being dropped."""
    from opentelemetry.exporter.otlp.proto.common._internal import _encode_attributes

    from fastgw.analytics.otel import _request_attributes

    row = {"provider": "openai", "status": 200, "model_requested": "gpt-4o"}
    attrs = _request_attributes(row, {"seed": 18446744073709551615, "max_tokens": 5}, "chat")
    encoded = {kv.key: kv.value for kv in _encode_attributes(attrs)}
    assert encoded["gen_ai.request.seed"].double_value == float(18446744073709551615)
    assert encoded["gen_ai.request.max_tokens"].int_value == 5
