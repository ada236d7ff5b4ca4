"""Enrichment, in the exporter: a worker's raw record becomes a row, with usage, tokens and cost.

This is the work the response did not need, so it runs here rather than on the request path:

1. The requested model comes from the request body (kept in the record even when the body is not
   to be stored, so that an omitted body still gets a price).
2. Usage comes from the provider's own response (``source=provider``), including the usage chunk
   the gateway asked for and hid from the client. Failing that, for a successful answer, the
   tokens are counted from the prompt and the generated text (``source=counted``). Errors without
   usage are ``source=none``.
3. Cost comes from the price table, in integer nano-dollars, or null with a reason.
"""

from __future__ import annotations

from typing import Any

import orjson

from fastgw._native import recordwire
from fastgw.requestlog.prices import PriceTable
from fastgw.requestlog.record import decode_for_row
from fastgw.requestlog.usage import Usage, extract_usage, single_chunk_usage, stream_content

# OpenAI's documented chat framing: each message costs 3 tokens beyond its text, and the reply is
# primed with 3 more. Used only when counting because the provider gave no usage.
_TOKENS_PER_MESSAGE = 3
_REPLY_PRIMING = 3


def request_json(body: str | bytes) -> dict[str, Any]:
    """The request body as a JSON object; {} for anything else (the log never fails on a body)."""
    if not body or body[:1] not in ("{", b"{"):
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def model_of(request: dict[str, Any]) -> str:
    model = request.get("model")
    return model if isinstance(model, str) else ""


def requested_model(body: str | bytes) -> str:
    """``model_of(request_json(body))``, read by a scan of the body (``recordwire.top_level_model``)
    rather than a parse of it, which cost the exporter about 1 µs of its ~20 a record. The body is
    parsed where the scan can't be sure (an escape, the key twice, a body cut short). Unlike the
    parse, a body that is not JSON but whose strings and brackets close still gives its model."""
    if not body:
        return ""
    found = recordwire.top_level_model(body)
    return found if found is not None else model_of(request_json(body))


def pricing_provider(provider: str, fmt: str) -> str:
    """The price-table section for a provider: a raw ``Helicone-Target-Url`` is priced by its format."""
    return fmt if provider.startswith("target:") else provider


def _texts(value: Any, out: list[str]) -> None:
    """Every human-readable string in a prompt structure (messages, content parts, input, system)."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for item in value:
            _texts(item, out)
    elif isinstance(value, dict):
        for key in ("content", "text", "input", "system", "prompt", "messages", "input_text"):
            if key in value:
                _texts(value[key], out)


def _hidden_usage(fmt: str, path: str, hidden: str) -> Usage | None:
    """The usage of a stream from the usage chunk the gateway hid from the client, alone.

    That chunk (OpenAI's format, whatever the provider) comes last, so a walk over the whole stream
    ends on the same usage: reading the one event instead of every chunk cuts a stream's
    enrichment by about 12 µs, and reading that event without the SSE walk (``single_chunk_usage``)
    by 2-3 more. The walk still runs when the chunk names no model (the stream's earlier
    chunks would supply it) or holds no usage, so the result never differs.
    """
    if fmt != "openai":
        return None
    usage = single_chunk_usage(hidden)
    if usage is False:
        usage = extract_usage(fmt, path, hidden.encode(), True)
    return usage if usage is not None and usage.model else None


# What a record carries for the exporter alone: read here, never a row's field. Every other field
# of a record (record.pack_record, the manual logger) is the row's, as it is.
RECORD_ONLY = ("created_at_ms", "format", "response_content_type", "hidden_usage", "omit_request",
               "omit_response", "client_left", "usage_injected")


# A row's timings are UInt32 microseconds (schema.REQUESTS): 71 min 35 s at most. A longer request
# (a stream that ran for hours, a long call logged by hand) keeps its row, each timing saturated at
# the column's maximum, where the sink would refuse the whole row; a negative one (a clock step)
# becomes 0 for the same reason.
TIMINGS_US = ("total_us", "ttfb_us", "upstream_us", "gateway_us")
ATTEMPT_US = ("start_us", "dur_us")
MAX_US = 2**32 - 1


def saturated_us(us: int) -> int:
    """A duration in microseconds as a row's UInt32 column can hold it."""
    return 0 if us < 0 else MAX_US if us > MAX_US else us


class Enricher:
    def __init__(self, prices: PriceTable) -> None:
        self.prices = prices
        self.counted = 0  # rows whose usage had to be counted
        self.unpriced = 0  # rows with a null cost

    def row(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The row of a decoded record (``decode_record``); ``raw`` is left as it was."""
        return self._enriched(raw, False)

    def row_of(self, data: bytes) -> dict[str, Any]:
        """The row of a record as the ring holds it: ``row(decode_record(data))``, made in the decoded
        dict itself rather than a copy of it, and with usage read from the body's own bytes."""
        return self._enriched(decode_for_row(data), True)

    def _enriched(self, raw: dict[str, Any], in_place: bool) -> dict[str, Any]:
        kind = raw.get("kind", "request")
        if kind != "request":
            return raw  # feedback and scores are already rows
        request_text = raw.get("request_body", "")
        model_requested = requested_model(request_text)
        fmt = raw.get("format", "")
        path = raw.get("path", "")
        body = raw.get("response_bytes")
        if body is None:
            body = raw.get("response_body", "").encode("utf-8", "replace")
        hidden = raw.get("hidden_usage", "")
        stream = "event-stream" in raw.get("response_content_type", "")
        status = int(raw.get("status", 0))
        usage = _hidden_usage(fmt, path, hidden) if hidden and stream else None
        if usage is None and (status < 400 or body):
            usage = extract_usage(fmt, path, body + b"\n\n" + hidden.encode() if hidden else body, stream)
        if usage is None:
            usage = (self._count(request_json(request_text), fmt, path, body, model_requested) if 200 <= status < 300
                     else Usage(source="none"))
        model_served = usage.model or model_requested or ""
        provider = raw.get("provider", "")
        cost, reason = self.prices.cost(pricing_provider(provider, fmt), model_served or None, usage)
        saved = None
        if raw.get("cache_status") == "hit":
            saved, cost = cost, 0  # served from the cache: it cost nothing, and saved what it would have
            reason = None
        elif cost is None:
            self.unpriced += 1
        # Read before the record-only keys go (in place, raw is the row).
        created_at = raw["created_at_ms"] / 1000
        request_body = "" if raw.get("omit_request") else raw.get("request_body", "")
        response_body = "" if raw.get("omit_response") else raw.get("response_body", "")
        client_left = raw.get("client_left")
        # The record's own fields, less what only the exporter reads: copying the dict and dropping
        # a few keys costs a third of picking the row's ~30 keys one by one; a record decoded for
        # this row alone (row_of) is not even copied.
        row = raw if in_place else raw.copy()
        for key in RECORD_ONLY:
            row.pop(key, None)
        row.pop("response_bytes", None)  # decode_for_row's, for the usage above
        for key in TIMINGS_US:
            us = row.get(key)
            if us.__class__ is int and not 0 <= us <= MAX_US:
                row[key] = saturated_us(us)
        attempts = row.get("attempts")
        if attempts:  # retries and fallbacks: their UInt32 offsets and durations too
            for attempt in attempts:
                for key in ATTEMPT_US:
                    us = attempt.get(key) if attempt.__class__ is dict else None
                    if us.__class__ is int and not 0 <= us <= MAX_US:
                        attempt[key] = saturated_us(us)
        # One assignment a field rather than ``row.update(kind=..., ...)``: the keywords were first
        # gathered into a dict of their own and then merged, about 5,900 instructions a record more
        # (callgrind of row_of, benchmarks/micro/bench_exporter_instructions.py).
        row["kind"] = "request"
        row["created_at"] = created_at
        row["model_requested"] = model_requested
        row["model_served"] = model_served
        row["stream"] = stream
        row["prompt_tokens"] = usage.prompt_tokens
        row["completion_tokens"] = usage.completion_tokens
        row["cache_read_tokens"] = usage.cache_read_tokens
        row["cache_write_tokens"] = usage.cache_write_tokens
        row["reasoning_tokens"] = usage.reasoning_tokens
        row["usage_source"] = usage.source
        row["cost_nanousd"] = cost
        row["cache_saved_nanousd"] = saved or 0
        row["cost_null_reason"] = reason or ""
        row["request_body"] = request_body
        row["response_body"] = response_body
        if client_left and not row.get("error_type"):
            row["error_type"] = "client_disconnected"
        return row

    def _count(self, request: dict[str, Any], fmt: str, path: str, body: bytes, model: str) -> Usage:
        usage = count_usage(request, fmt, path, body, model)
        if usage.source == "counted":
            self.counted += 1
        return usage


def count_usage(request: dict[str, Any], fmt: str, path: str, body: bytes, model: str) -> Usage:
    """Count tokens ourselves: exact for OpenAI's encodings, o200k as the estimate for others.

    Also used by the worker's cost meter for a stream the client left before its usage arrived, so
    a budget is charged what the log row says."""
    from fastgw.requestlog.tokenizer import encoding_for_model, get_encoding

    enc = get_encoding(encoding_for_model(model))
    texts: list[str] = []
    messages = request.get("messages")
    _texts(request.get("messages") or request.get("input") or request.get("prompt") or [], texts)
    _texts(request.get("system") or [], texts)
    prompt = sum(enc.count(t) for t in texts)
    if isinstance(messages, list):
        prompt += _TOKENS_PER_MESSAGE * len(messages) + _REPLY_PRIMING
    completion = enc.count(stream_content(fmt, path, body)) if body else 0
    if not prompt and not completion:
        return Usage(source="none")
    return Usage(prompt_tokens=prompt, completion_tokens=completion, source="counted", model=None)
