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
