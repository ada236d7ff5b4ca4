"""OpenTelemetry traces: one span per logged request, sent over OTLP/HTTP by the exporter process.

Why from the log rows: the row already holds everything a span needs (its start, its duration,
the models, the usage, the attempts), so the workers create no spans and hold no tracer; the
official SDK (a TracerProvider with a BatchSpanProcessor and the OTLP/HTTP exporter) runs here, in
the exporter, and sends from its own thread.

What a span looks like (GenAI semantic conventions, https://opentelemetry.io/docs/specs/semconv/gen-ai/):

- name ``"{gen_ai.operation.name} {gen_ai.request.model}"`` (``chat gpt-4o-mini``), kind CLIENT, from
  ``created_at`` to ``created_at + total_us``;
- ``gen_ai.provider.name`` and, for backends that predate it, ``gen_ai.system``; the request and
  response models; ``gen_ai.usage.*`` tokens; ``gen_ai.request.temperature`` / ``max_tokens`` /
  ``top_p`` when the request body had them; ``http.response.status_code``; ``error.type`` and an
  error status for a failed request; ``fastgw.*`` for what has no convention (request id, cost,
  cache status, gateway time);
- one child span per upstream attempt when the request was retried or fell back (the row's
  ``attempts``), each with its target, status, error and its own start and duration;
- ``gen_ai.input.messages`` / ``gen_ai.output.messages`` only with ``otel.capture_content: true``.

Trace ids: a request that arrived with a W3C ``traceparent`` header joins that trace, as a child of
the caller's span. Otherwise the trace id *is* the request id (``Helicone-Id``, a UUID: its 128 bits
as the trace id), so a trace is found from the id every response carries. Span ids are hashes of
the request id, so a batch the exporter re-sends after a crash produces the same spans again,
which a backend can recognise as duplicates. Every span is recorded (the sampler is ALWAYS_ON):
turning ``otel`` on is the operator's choice to trace, whatever the caller's sampled flag says.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from fastgw.requestlog.enrich import request_json
from fastgw.requestlog.usage import stream_content

if TYPE_CHECKING:
    from fastgw.config import OtelConfig

log = logging.getLogger("fastgw.otel")

# Where the path says what the operation is (the semconv's gen_ai.operation.name values).
_OPERATIONS = (
    ("/chat/completions", "chat"),
    ("/messages", "chat"),  # Anthropic
    ("/responses", "chat"),
    ("/completions", "text_completion"),
    ("/embeddings", "embeddings"),
)
_REQUEST_PARAMS = (
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("max_output_tokens", "gen_ai.request.max_tokens"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("seed", "gen_ai.request.seed"),
)
_USAGE = (
    ("prompt_tokens", "gen_ai.usage.input_tokens"),
    ("completion_tokens", "gen_ai.usage.output_tokens"),
    ("cache_read_tokens", "gen_ai.usage.cache_read.input_tokens"),
    ("cache_write_tokens", "gen_ai.usage.cache_creation.input_tokens"),
)
# What the BatchSpanProcessor holds before it drops: an exporter batch can be 5000 rows.
_QUEUE_SIZE = 65536
_propagator = TraceContextTextMapPropagator()


def trace_id_for(request_id: str) -> int:
    """The request id's UUID as a 128-bit trace id (any other id: its hash)."""
    try:
        value = uuid.UUID(request_id).int
    except ValueError:
        value = int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=16).digest(), "big")
    return value or 1


def span_id_for(request_id: str, part: str = "") -> int:
    digest = hashlib.blake2b(f"{request_id}/{part}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


class _RowIds(IdGenerator):
    """Hands the SDK the ids chosen for the span about to start (see the module docstring).

    Spans are started one at a time on the exporter's thread, so "the next ids" is plain state;
    the lock only guards against a second thread ever starting spans on this provider.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.trace_id = 0
        self.span_id = 0

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        return self.span_id


class SpanExporter:
    """The exporter's observer for OpenTelemetry: spans from committed rows, to ``otel.endpoint``."""

    def __init__(self, config: OtelConfig, span_exporter: Any = None) -> None:
        self.capture_content = config.capture_content
        self.ids = _RowIds()
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}), sampler=ALWAYS_ON, id_generator=self.ids,
        )
        exporter = span_exporter or OTLPSpanExporter(
            endpoint=config.endpoint, headers=dict(config.headers), timeout=float(config.timeout),
        )
        self.provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=_QUEUE_SIZE,
                                                            max_export_batch_size=1024))
        self.tracer = self.provider.get_tracer("fastgw")

    def observe(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if row.get("kind", "request") == "request" and row.get("request_id"):
                self._request_span(row)

    def close(self) -> None:
        """Send what is queued, then stop (the BatchSpanProcessor's thread with it)."""
        self.provider.shutdown()

    def flush(self, timeout_ms: int = 10_000) -> bool:
        return self.provider.force_flush(timeout_ms)

    # --- one request ----------------------------------------------------------------------------

    def _request_span(self, row: dict[str, Any]) -> None:
        rid = str(row["request_id"])
        start_ns = round(float(row.get("created_at") or 0) * 1000) * 1_000_000
        end_ns = start_ns + int(row.get("total_us") or 0) * 1000
        request = request_json(row.get("request_body") or "")
        operation = _operation(row.get("path") or "")
        model = row.get("model_requested") or ""
        attrs = _request_attributes(row, request, operation)
        if self.capture_content:
            attrs.update(_content(request, row))
        name = f"{operation} {model}".strip() if operation else f"{row.get('method') or 'POST'} {row.get('provider') or ''}".strip()
        with self.ids.lock:
            self.ids.trace_id, self.ids.span_id = trace_id_for(rid), span_id_for(rid)
            span = self.tracer.start_span(name, context=_parent(row), kind=SpanKind.CLIENT, attributes=attrs,
                                          start_time=start_ns)
            _set_status(span, row.get("status") or 0, row.get("error_type") or "", row.get("error_message") or "")
            attempts = row.get("attempts")
            if isinstance(attempts, str) and attempts.startswith("["):  # a sink-shaped row: JSON text
                attempts = orjson.loads(attempts)
            if isinstance(attempts, list) and attempts:
                self._attempt_spans(span, rid, start_ns, operation, attempts)
        span.end(end_time=end_ns)

    def _attempt_spans(self, parent: trace.Span, rid: str, start_ns: int, operation: str,
                       attempts: list[Any]) -> None:
        ctx = trace.set_span_in_context(parent)
        for i, attempt in enumerate(attempts):
            if not isinstance(attempt, dict):
                continue
            provider, _, model = str(attempt.get("target") or "").partition("/")
            status = int(attempt.get("status") or 0)
            error = str(attempt.get("error") or "")
            begin = start_ns + int(attempt.get("start_us") or 0) * 1000
            attrs: dict[str, Any] = {
                "gen_ai.provider.name": provider, "gen_ai.system": provider, "fastgw.attempt": i,
                "fastgw.fallback_index": int(attempt.get("fallback_index", -1)),
            }
            if operation:
                attrs["gen_ai.operation.name"] = operation
            if model:
                attrs["gen_ai.request.model"] = model
            if status:
                attrs["http.response.status_code"] = status
            self.ids.span_id = span_id_for(rid, f"attempt/{i}")
            span = self.tracer.start_span(f"{operation or 'attempt'} {model or provider}".strip(), context=ctx,
                                          kind=SpanKind.CLIENT, attributes=attrs, start_time=begin)
            _set_status(span, status, error, error)
            span.end(end_time=begin + int(attempt.get("dur_us") or 0) * 1000)


def _operation(path: str) -> str:
    path = path.split("?", 1)[0]
    for suffix, operation in _OPERATIONS:
        if path.endswith(suffix):
            return operation
    return ""


def _parent(row: dict[str, Any]) -> Any:
    """The caller's span from a logged ``traceparent`` header, else None (a new trace)."""
    headers = row.get("request_headers")
    if not isinstance(headers, dict):
        return None
    value = headers.get("traceparent") or next((v for k, v in headers.items() if k.lower() == "traceparent"), None)
    if not value:
        return None
    ctx = _propagator.extract({"traceparent": value})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def _request_attributes(row: dict[str, Any], request: dict[str, Any], operation: str) -> dict[str, Any]:
    provider = row.get("provider") or ""
    attrs: dict[str, Any] = {
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,
        "http.request.method": row.get("method") or "",
        "url.path": (row.get("path") or "").split("?", 1)[0],
        "fastgw.request_id": str(row.get("request_id")),
        "fastgw.stream": bool(row.get("stream")),
        "fastgw.gateway_us": int(row.get("gateway_us") or 0),
        "fastgw.ttfb_us": int(row.get("ttfb_us") or 0),
    }
    if operation:
        attrs["gen_ai.operation.name"] = operation
    for key, name in (("model_requested", "gen_ai.request.model"), ("model_served", "gen_ai.response.model"),
                      ("cache_status", "fastgw.cache_status"), ("user_id", "fastgw.user_id"),
                      ("session_id", "fastgw.session_id"), ("key_id", "fastgw.key_id")):
        if row.get(key):
            attrs[name] = str(row[key])
    if row.get("status"):
        attrs["http.response.status_code"] = int(row["status"])
    for key, name in _USAGE:
        if row.get(key) is not None and (row[key] or key in ("prompt_tokens", "completion_tokens")):
            attrs[name] = int(row[key])
    if row.get("cost_nanousd") is not None:
        attrs["fastgw.cost_usd"] = row["cost_nanousd"] / 1e9
    if row.get("retry_count"):
        attrs["fastgw.retry_count"] = int(row["retry_count"])
    if (row.get("fallback_index") if row.get("fallback_index") is not None else -1) >= 0:
        attrs["fastgw.fallback_index"] = int(row["fallback_index"])
    for key, name in _REQUEST_PARAMS:
        value = request.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name not in attrs:
            # OTLP ints are signed 64-bit: a bigger one (a client's seed) would lose the attribute
            attrs[name] = value if not isinstance(value, int) or -(1 << 63) <= value < (1 << 63) else float(value)
    return attrs


def _set_status(span: trace.Span, status: int, error_type: str, message: str) -> None:
    """A request without a 2xx/3xx answer is an error; error.type is the gateway's code, else the status."""
    if status and status < 400 and not error_type:
        return
    span.set_attribute("error.type", error_type or (str(status) if status else "_OTHER"))
    span.set_status(Status(StatusCode.ERROR, message[:256] or None))


def _content(request: dict[str, Any], row: dict[str, Any]) -> dict[str, str]:
    """Prompt and completion in the semconv's message shape, as JSON strings (opt-in only)."""
    out: dict[str, str] = {}
    messages = request.get("messages")
    if isinstance(messages, list):
        out["gen_ai.input.messages"] = orjson.dumps([_message(m) for m in messages if isinstance(m, dict)]).decode()
    elif isinstance(request.get("input") or request.get("prompt"), (str, list)):
        text = request.get("input") or request.get("prompt")
        out["gen_ai.input.messages"] = orjson.dumps([{"role": "user", "parts": _parts(text)}]).decode()
    system = request.get("system")
    if system:
        out["gen_ai.system_instructions"] = orjson.dumps(_parts(system)).decode()
    body = row.get("response_body") or ""
    if body:
        text = stream_content("", row.get("path") or "", body.encode("utf-8", "replace"))
        out["gen_ai.output.messages"] = orjson.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": text}]}]).decode()
    return out


def _message(message: dict[str, Any]) -> dict[str, Any]:
    return {"role": str(message.get("role") or "user"), "parts": _parts(message.get("content"))}


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, list):
        parts = []
        for item in content:
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                parts.append({"type": "text", "content": item["text"]})
            elif isinstance(item, str):
                parts.append({"type": "text", "content": item})
        return parts
    return []
