"""The log record as the worker built it before records were packed: a dict, field by field.

It is the readable statement of what each field of a request's record means, and the oracle the
packed record is held to (tests/native/test_recordwire.py): ``decode_record(pack_record(...))``
must give this dict, ``hidden_usage`` added, key for key and in the same order.
"""

from __future__ import annotations

import time
from typing import Any

from fastgw.context import RequestContext
from fastgw.redact import redact_query, redact_target
from fastgw.requestlog.record import capped, redacted_lines


def build_record(
    ctx: RequestContext,
    *,
    status: int,
    error: tuple[str, str] | None,
    response_body: bytes,
    response_truncated: bool,
    response_content_type: str,
    t_first_byte: int,
    client_left: bool,
    body_limit: int,
    omit_request: bool,
    omit_response: bool,
    worker: int,
) -> tuple[dict[str, Any], bytes, bytes]:
    """The record as a dict, the way the worker built it before it packed records, and the two bodies."""
    now = time.perf_counter_ns()
    h = ctx.headers.helicone
    provider = ctx.provider
    request_body, request_truncated = capped(ctx.body, body_limit)
    meta = {
        "kind": "request",
        "request_id": ctx.request_id,
        "created_at_ms": ctx.created_ms,
        "total_us": (now - ctx.t_start) // 1000,
        "ttfb_us": (t_first_byte - ctx.t_start) // 1000 if t_first_byte else 0,
        "upstream_us": ctx.upstream_ns // 1000,
        "gateway_us": ((t_first_byte or now) - ctx.t_start - ctx.upstream_ns) // 1000,
        "method": ctx.method.decode("latin-1"),
        "path": redact_target(ctx.target).decode("latin-1"),
        "provider": provider.name if provider is not None else "",
        # A unified-API answer reached the client in OpenAI's format, whatever the provider's.
        "format": ("openai" if ctx.unified is not None else provider.format.name) if provider is not None else "",
        "target_url": (str(provider.origin) + redact_query(ctx.upstream_path).decode("latin-1")) if provider is not None else "",
        "status": status,
        "error_type": error[0] if error else "",
        "error_message": error[1] if error else "",
        "client_left": client_left,
        "usage_injected": ctx.usage_injected,
        "user_id": h.user_id or "",
        "properties": h.properties,
        "session_id": h.session_id or "",
        "session_path": h.session_path or "",
        "session_name": h.session_name or "",
        # The exporter reads the model from the request body even when the body is not to be
        # stored, so the omit flags travel with the body and the exporter drops it before the sink.
        "omit_request": omit_request or (h.omit_request or "").lower() == "true",
        "omit_response": omit_response or (h.omit_response or "").lower() == "true",
        "request_truncated": request_truncated,
        "response_truncated": response_truncated,
        "response_content_type": response_content_type,
        "request_headers": redacted_lines(ctx).decode("latin-1"),
        "worker": worker,
    }
    if ctx.cache_status:
        meta["cache_status"] = ctx.cache_status
    if ctx.retry_count:
        meta["retry_count"] = ctx.retry_count
    if ctx.fallback_index >= 0:
        meta["fallback_index"] = ctx.fallback_index
    if ctx.attempts:
        meta["attempts"] = ctx.attempts
    if ctx.principal is not None:
        meta["key_id"] = ctx.principal.key_id
    if ctx.model_override is not None:
        meta["target_model"] = ctx.model_override
    return meta, request_body, response_body
