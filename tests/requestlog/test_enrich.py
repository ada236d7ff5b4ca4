"""Enrichment in the exporter: provider usage when there is some, counted tokens when not, priced exactly."""

from __future__ import annotations

import orjson

from fastgw.requestlog.enrich import Enricher
from fastgw.requestlog.prices import PriceTable
from fastgw.requestlog.tokenizer import get_encoding


def raw(**over: object) -> dict:
    base = {
        "kind": "request", "request_id": "0b7f6d7e-6b8e-4c43-9d6f-0a3f1f4a8b9c", "created_at_ms": 1790000000000,
        "provider": "openai", "format": "openai", "path": "/v1/chat/completions", "status": 200,
        "request_body": orjson.dumps({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count these words for me"}]}).decode(),
        "response_body": "", "response_content_type": "text/event-stream",
    }
    return {**base, **over}


def test_stream_without_usage_is_counted_exactly() -> None:
    events = [{"choices": [{"delta": {"content": piece}}]} for piece in ("Hello", " there", ", 世界 🙂")]
    body = "".join(f"data: {orjson.dumps(e).decode()}\n\n" for e in events) + "data: [DONE]\n\n"
    row = Enricher(PriceTable.load()).row(raw(response_body=body))
    enc = get_encoding("o200k_base")
    assert row["usage_source"] == "counted"
    assert row["completion_tokens"] == enc.count("Hello there, 世界 🙂")
    assert row["prompt_tokens"] == enc.count("Be brief.") + enc.count("Count these words for me") + 3 * 2 + 3
    assert row["cost_nanousd"] == row["prompt_tokens"] * 150 + row["completion_tokens"] * 600


def test_provider_usage_wins_and_omitted_bodies_are_dropped() -> None:
    body = orjson.dumps({"model": "gpt-4o-mini-2024-07-18", "choices": [{"message": {"content": "x"}}],
                         "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}).decode()
    row = Enricher(PriceTable.load()).row(raw(response_body=body, response_content_type="application/json",
                                              omit_request=True, omit_response=True))
    assert (row["usage_source"], row["prompt_tokens"], row["completion_tokens"]) == ("provider", 10, 2)
    assert row["model_requested"] == "gpt-4o-mini" and row["model_served"] == "gpt-4o-mini-2024-07-18"
    assert row["request_body"] == "" and row["response_body"] == ""
    assert row["cost_nanousd"] == 10 * 150 + 2 * 600


def test_unknown_model_has_a_null_cost_with_a_reason_and_errors_have_no_usage() -> None:
    e = Enricher(PriceTable.load())
    body = orjson.dumps({"model": "my-local-llm", "usage": {"prompt_tokens": 5, "completion_tokens": 1}}).decode()
    row = e.row(raw(response_body=body, response_content_type="application/json",
                    request_body='{"model":"my-local-llm"}'))
    assert row["cost_nanousd"] is None and row["cost_null_reason"] == "unknown_model"
    err = e.row(raw(status=500, response_body='{"error":{"message":"boom"}}', response_content_type="application/json"))
    assert err["usage_source"] == "none" and err["cost_nanousd"] is None


def _chunk(model: str | None, usage: dict | None = None, content: str | None = None) -> str:
    event: dict = {"object": "chat.completion.chunk", "choices": [] if usage else [{"delta": {"content": content}}]}
    if model is not None:
        event["model"] = model
    if usage is not None:
        event["usage"] = usage
    return f"data: {orjson.dumps(event).decode()}\n\n"


def test_hidden_usage_chunk_alone_gives_the_same_row_as_walking_the_whole_stream() -> None:
    """The exporter reads only the usage chunk it hid; the row must equal a walk over every chunk."""
    from fastgw.requestlog.usage import extract_usage

    body = "".join(_chunk("gpt-4o-mini-2024-07-18", content=w) for w in ("one ", "two ", "three")) + "data: [DONE]\n\n"
    usage = {"prompt_tokens": 21, "completion_tokens": 3, "total_tokens": 24,
             "prompt_tokens_details": {"cached_tokens": 5}, "completion_tokens_details": {"reasoning_tokens": 1}}
    for hidden_model in ("gpt-4o-mini-2024-07-18", None):  # None: the model must come from the stream
        hidden = _chunk(hidden_model, usage)
        row = Enricher(PriceTable.load()).row(raw(response_body=body, hidden_usage=hidden))
        walked = extract_usage("openai", "/v1/chat/completions", (body + "\n\n" + hidden).encode(), True)
        assert walked is not None and walked.model == "gpt-4o-mini-2024-07-18"
        assert (row["prompt_tokens"], row["completion_tokens"], row["cache_read_tokens"], row["reasoning_tokens"]) == (
            walked.prompt_tokens, walked.completion_tokens, walked.cache_read_tokens, walked.reasoning_tokens) == (21, 3, 5, 1)
        assert row["usage_source"] == "provider" and row["model_served"] == walked.model
        assert row["cost_nanousd"] == Enricher(PriceTable.load()).prices.cost("openai", walked.model, walked)[0]


def test_a_hidden_chunk_without_usage_falls_back_to_the_stream() -> None:
    body = _chunk("gpt-4o-mini", content="hi") + _chunk("gpt-4o-mini", {"prompt_tokens": 7, "completion_tokens": 1})
    row = Enricher(PriceTable.load()).row(raw(response_body=body, hidden_usage=_chunk("gpt-4o-mini", content="x")))
    assert (row["usage_source"], row["prompt_tokens"], row["completion_tokens"]) == ("provider", 7, 1)


def test_a_row_keeps_every_field_of_a_worker_record_and_none_of_the_exporters_own() -> None:
    """The row is the record less enrich.RECORD_ONLY: a field the worker adds reaches the sinks, and
    the keys of a fully featured record are exactly the request table's columns and the observers'."""
    import time

    from fastgw.app import context_from_raw
    from fastgw.config import Config, ProviderConfig
    from fastgw.keys.principal import Principal
    from fastgw.keys.record import KeyRecord
    from fastgw.providers.table import Provider
    from fastgw.requestlog.enrich import RECORD_ONLY
    from fastgw.requestlog.record import decode_record, pack_record
    from fastgw.requestlog.schema import REQUESTS

    ctx = context_from_raw(b"POST", b"/v1/chat/completions", [(b"host", b"h"), (b"authorization", b"Bearer sk-x")],
                           raw()["request_body"].encode(), time.perf_counter_ns())
    ctx.provider = Provider.from_config("openai", ProviderConfig(base_url="https://o.test", format="openai"))
    ctx.upstream_path = b"/v1/chat/completions"
    ctx.cache_status, ctx.retry_count, ctx.fallback_index, ctx.model_override = "miss", 1, 0, "gpt-4o"
    ctx.attempts = [{"target": "openai", "status": 500, "error": "x", "start_us": 0, "dur_us": 1, "fallback_index": 0}]
    ctx.principal = Principal(KeyRecord(key_hash="0" * 64, key_id="key_k1", name="k", hint="fgw-...k1", created_at=0.0),
                              Config())
    ctx.hidden_usage = _chunk("gpt-4o-mini", usage={"prompt_tokens": 3, "completion_tokens": 2}).encode()
    record = decode_record(pack_record(
        ctx, status=200, error=None, response_body=b"data: [DONE]\n\n", response_truncated=False,
        response_content_type="text/event-stream", t_first_byte=0, client_left=True, body_limit=1000,
        omit_request=False, omit_response=False, worker=3))
    row = Enricher(PriceTable.load()).row(dict(record))
    assert set(RECORD_ONLY) <= set(record) and not set(RECORD_ONLY) & set(row)
    kept = [k for k in record if k not in RECORD_ONLY and k not in ("request_body", "response_body", "error_type")]
    assert {k: row[k] for k in kept} == {k: record[k] for k in kept}
    columns = {c.name for c in REQUESTS.insert_columns}
    assert set(row) - columns == {"kind", "attempts", "target_model"} - columns, set(row) - columns
    assert columns - set(row) == {"gateway_instance"}, columns - set(row)  # the sink's own
    assert row["error_type"] == "client_disconnected" and row["prompt_tokens"] == 3


def test_row_of_the_ring_bytes_is_the_row_of_the_decoded_record() -> None:
    """``row_of`` (the exporter's call) enriches the decoded dict in place and reads usage from the
    body's own bytes when they are valid UTF-8; ``row`` copies. Same rows either way, including
    bodies that are not valid UTF-8 (usage then comes from the replaced text, as before) and bodies
    that hold a real U+FFFD."""
    import time

    from fastgw.app import context_from_raw
    from fastgw.config import ProviderConfig
    from fastgw.providers.table import Provider
    from fastgw.requestlog.record import decode_record, encode_record, pack_record

    answer = orjson.dumps({"model": "gpt-4o-mini-2024-07-18", "choices": [{"message": {"content": "ok \ufffd 世界"}}],
                           "usage": {"prompt_tokens": 11, "completion_tokens": 4}})
    # Not UTF-8 inside a string, and a nested "model" first: the replaced text parses (the top-level
    # model serves), the raw bytes would not (salvage would take the first "model" it finds).
    nested = (b'{"choices":[{"message":{"content":"x\xff","metadata":{"model":"gpt-4o"}}}],'
              b'"model":"gpt-4o-mini","usage":{"prompt_tokens":5,"completion_tokens":1}}')
    bodies = [answer, answer[:-30], answer.replace("世".encode(), b"\xe4\xb8"), b"\xff\xfe" + answer, b"", nested,
              b'data: {"choices":[{"delta":{"content":"hi \\ufffd"}}]}\n\ndata: [DONE]\n\n',
              b"data: " + "\ufffd".encode() + b"\xc3\n\n"]
    datas = []
    for i, body in enumerate(bodies):
        for omit in (False, True):
            ctx = context_from_raw(b"POST", b"/v1/chat/completions", [(b"host", b"h")], raw()["request_body"].encode(),
                                   time.perf_counter_ns())
            ctx.provider = Provider.from_config("openai", ProviderConfig(base_url="https://o.test", format="openai"))
            ctx.upstream_path = b"/v1/chat/completions"
            ctx.hidden_usage = _chunk("gpt-4o", usage={"prompt_tokens": 3, "completion_tokens": 2}).encode() if i == 6 else b""
            datas.append(pack_record(
                ctx, 200 if i != 1 else 502, None, body, False, "text/event-stream" if i >= 6 else "application/json",
                0, i == 4, 1000, omit, omit, 1))
    datas.append(encode_record({k: v for k, v in raw().items() if not k.endswith("_body")}, b"{}", answer))
    datas.append(encode_record({"kind": "feedback", "request_id": raw()["request_id"], "created_at": 1.0, "rating": True}))
    one, other = Enricher(PriceTable.load()), Enricher(PriceTable.load())
    for data in datas:
        decoded = decode_record(data)
        before = dict(decoded)
        row = one.row(decoded)
        assert decoded == before  # row() leaves its argument as it was
        assert other.row_of(data) == row
        assert "response_bytes" not in row
    assert (one.counted, one.unpriced) == (other.counted, other.unpriced)
    assert one.row(decode_record(datas[10]))["model_served"] == "gpt-4o-mini"  # the nested case, as said


def test_timings_past_the_uint32_columns_saturate_and_the_row_is_kept() -> None:
    """A stream of two hours is over the 71 min 35 s a UInt32 of microseconds holds: its timings
    saturate at the column's maximum (a negative one becomes 0) rather than the sink refusing the
    row, for a packed record and for a JSON one alike. The sink's encoder takes the rows."""
    import time

    from fastgw.app import context_from_raw
    from fastgw.config import ProviderConfig
    from fastgw.providers.table import Provider
    from fastgw.requestlog.record import encode_record, pack_record
    from fastgw.requestlog.sinks.clickhouse import encode_native

    two_hours_ns = 7200 * 10**9
    MAX_US = 2**32 - 1  # UInt32's maximum
    ctx = context_from_raw(b"POST", b"/v1/chat/completions", [(b"host", b"h")], raw()["request_body"].encode(),
                           time.perf_counter_ns() - two_hours_ns)
    ctx.provider = Provider.from_config("openai", ProviderConfig(base_url="https://o.test", format="openai"))
    ctx.upstream_path = b"/v1/chat/completions"
    ctx.upstream_ns = two_hours_ns
    packed = pack_record(ctx, 200, None, b"data: [DONE]\n\n", False, "text/event-stream", ctx.t_start + 250_000_000,
                         False, 1000, False, False, 1)
    json_record = encode_record({k: v for k, v in raw().items() if not k.endswith("_body")}
                                | {"total_us": 7_200_000_000, "upstream_us": 2**40, "ttfb_us": 5, "gateway_us": -3})
    enricher = Enricher(PriceTable.load())
    rows = [enricher.row_of(packed), enricher.row_of(json_record)]
    assert [rows[0][k] for k in ("total_us", "ttfb_us", "upstream_us")] == [MAX_US, 250_000, MAX_US]
    assert rows[0]["gateway_us"] == 0  # first byte before the upstream's time ended: negative, kept as 0
    assert [rows[1][k] for k in ("total_us", "ttfb_us", "upstream_us", "gateway_us")] == [MAX_US, 5, MAX_US, 0]
    encode_native(rows)  # raised "column 'total_us', row 0: ... is out of range" before


def test_attempt_timings_past_the_uint32_columns_saturate_too() -> None:
    """A retried request's attempts carry their own UInt32 offsets and durations: an attempt that
    waited over 71 minutes made the sink's encoder refuse the whole row."""
    from fastgw.requestlog.record import encode_record
    from fastgw.requestlog.sinks.clickhouse import encode_native

    attempts = [{"target": "openai", "status": 504, "error": "upstream_timeout", "start_us": 0, "dur_us": 2**40,
                 "fallback_index": -1},
                {"target": "anthropic", "status": 200, "error": "", "start_us": 2**33, "dur_us": -5, "fallback_index": 0}]
    record = encode_record({k: v for k, v in raw().items() if not k.endswith("_body")} | {"attempts": attempts})
    row = Enricher(PriceTable.load()).row_of(record)
    assert [(a["start_us"], a["dur_us"]) for a in row["attempts"]] == [(0, 2**32 - 1), (2**32 - 1, 0)]
    assert [a["target"] for a in row["attempts"]] == ["openai", "anthropic"]
    encode_native([row])  # raised "column 'attempts', row 0: ... is out of range" before
