"""The exporter's work on a varied corpus of records, printed as JSON: run once compiled, once pure.

``python -m tests.compiled_twins`` encodes each record (the worker's side of record.py), decodes
and enriches it (record, enrich, usage, prices), folds the rows into the Prometheus metrics and
renders them (analytics/metrics), and prints everything with which build of each module ran.
tests/test_compiled.py runs it with and without FASTGW_PURE=1 and compares the two outputs.
"""

from __future__ import annotations

import hashlib
import json
import sys

import orjson

from fastgw import _compiled
from fastgw.analytics.metrics import GatewayMetrics
from fastgw.config import MetricsConfig
from fastgw.requestlog.enrich import Enricher
from fastgw.requestlog.prices import PriceTable
from fastgw.requestlog.record import decode_record, encode_record
from fastgw.testing import mock_payloads as mp

PIECES = ("Hello", " there", ", 世界 🙂", " and\nmore\ttext", " done.")
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "Count these words for me"}]}


def _meta(i: int, **over: object) -> dict:
    meta = {
        "kind": "request", "request_id": f"00000000-0000-4000-8000-{i:012d}", "created_at_ms": 1_790_000_000_000 + i,
        "total_us": 1000 + 37 * i, "ttfb_us": 400 + i, "upstream_us": 900, "gateway_us": 50 + i % 7,
        "method": "POST", "path": "/v1/chat/completions", "provider": "openai", "format": "openai",
        "target_url": "https://api.openai.com/v1/chat/completions", "status": 200, "error_type": "",
        "error_message": "", "client_left": False, "usage_injected": False, "user_id": f"u{i % 3}",
        "properties": {"env": "prod", "n": str(i)}, "session_id": "", "session_path": "", "session_name": "",
        "omit_request": False, "omit_response": False, "request_truncated": False, "response_truncated": False,
        "response_content_type": "application/json",
        "request_headers": "user-agent: t\r\nauthorization: [redacted]\r\n", "worker": i % 2,
    }
    meta.update(over)
    return meta


def _sse(events: list[bytes]) -> bytes:
    return b"".join(events)


def cases() -> list[tuple[dict, bytes, bytes]]:
    chat = orjson.dumps(CHAT)
    stream_req = orjson.dumps({**CHAT, "stream": True})
    anth_req = orjson.dumps({"model": "claude-sonnet-4-5", "max_tokens": 50, "system": "Be brief.",
                             "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}]})
    gem_path = "/v1beta/models/gemini-2.5-flash:generateContent"
    full_chat = orjson.dumps(mp.chat_completion("c1", 1_700_000_000, "gpt-4o-mini-2024-07-18", PIECES, 21))
    hidden = mp.sse_data({"id": "c2", "object": "chat.completion.chunk", "model": "gpt-4o", "choices": [],
                          "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}}).decode()
    sse = "text/event-stream"
    out = [
        ({}, chat, full_chat),
        ({"response_content_type": sse, "usage_injected": True, "hidden_usage": hidden}, stream_req,
         _sse(mp.chat_stream("c2", 1_700_000_000, "gpt-4o", PIECES, 12, include_usage=False))),
        ({"response_content_type": sse}, stream_req,  # no usage anywhere: counted
         _sse(mp.chat_stream("c3", 1_700_000_000, "gpt-4o-mini", PIECES, 12, include_usage=False))),
        ({"response_content_type": sse}, stream_req,
         _sse(mp.chat_stream("c4", 1_700_000_000, "gpt-4.1", PIECES, 30, include_usage=True))),
        ({"path": "/v1/embeddings"}, orjson.dumps({"model": "text-embedding-3-small", "input": ["a b", "c"]}),
         orjson.dumps(mp.embeddings("text-embedding-3-small", ["a b", "c"], 4, False, 3))),
        ({"path": "/v1/responses"}, orjson.dumps({"model": "gpt-4.1-mini", "input": "Say hi"}),
         orjson.dumps(mp.response_object("r1", "m1", 1_700_000_000, "gpt-4.1-mini", "hi", 9, 2))),
        ({"path": "/v1/responses", "response_content_type": sse},
         orjson.dumps({"model": "gpt-4.1-mini", "input": "Say hi", "stream": True}),
         _sse(mp.responses_stream("r2", "m2", 1_700_000_000, "gpt-4.1-mini", PIECES, 9))),
        ({"provider": "anthropic", "format": "anthropic", "path": "/v1/messages"}, anth_req,
         orjson.dumps(mp.anthropic_message("msg1", "claude-sonnet-4-5-20250929", PIECES, 14))),
        ({"provider": "anthropic", "format": "anthropic", "path": "/v1/messages", "response_content_type": sse},
         anth_req, _sse(mp.anthropic_stream("msg2", "claude-sonnet-4-5-20250929", PIECES, 14))),
        ({"provider": "gemini", "format": "gemini", "path": gem_path},
         orjson.dumps({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}),
         orjson.dumps(mp.gemini_response("gemini-2.5-flash", [{"text": "Hello"}], 4, 2))),
        ({"provider": "gemini", "format": "gemini", "path": gem_path.replace("generateContent", "streamGenerateContent"),
          "response_content_type": sse},
         orjson.dumps({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}),
         _sse(mp.gemini_stream("gemini-2.5-flash", {}, PIECES, 4))),
        ({"status": 429, "error_type": "upstream_error", "error_message": "slow down"}, chat,
         mp.openai_error(429, "Rate limit reached")),
        ({"provider": "anthropic", "format": "anthropic", "path": "/v1/messages", "status": 529}, anth_req,
         mp.anthropic_error(529, "Overloaded")),
        ({"status": 502, "error_type": "upstream_unreachable", "error_message": "connection refused"}, chat, b""),
        ({"client_left": True, "response_content_type": sse}, stream_req,
         _sse(mp.chat_stream("c5", 1_700_000_000, "gpt-4o", PIECES[:2], 12, include_usage=False))[:150]),
        ({"cache_status": "hit"}, chat, full_chat),
        ({}, orjson.dumps({**CHAT, "model": "no-such-model-9"}),
         orjson.dumps(mp.chat_completion("c6", 1_700_000_000, "no-such-model-9", PIECES, 21))),
        ({"response_truncated": True}, chat, full_chat[: len(full_chat) - 40]),  # cut JSON: salvaged usage
        ({"omit_request": True, "omit_response": True}, chat, full_chat),
        ({"response_content_type": "text/plain"}, b"not json", b"plain text \xff\xfe answer"),
        ({"provider": "deepseek", "format": "openai", "retry_count": 2, "fallback_index": 1,
          "attempts": [{"target": "a", "status": 500, "error": "x", "start_us": 0, "dur_us": 10, "fallback_index": -1}]},
         orjson.dumps({**CHAT, "model": "deepseek-chat"}),
         orjson.dumps({"model": "deepseek-chat", "choices": [], "usage": {
             "prompt_tokens": 100, "completion_tokens": 7, "prompt_cache_hit_tokens": 60}})),
    ]
    return out


def run() -> dict:
    enricher, again = Enricher(PriceTable.load()), Enricher(PriceTable.load())
    metrics = GatewayMetrics(MetricsConfig())
    records, rows = [], []
    for i, (over, request, response) in enumerate(cases()):
        raw = encode_record(_meta(i, **over), request, response)
        records.append(hashlib.sha256(raw).hexdigest())
        rows.append(enricher.row_of(raw))  # the exporter's call
        if again.row(decode_record(raw)) != rows[-1]:
            raise SystemExit(f"case {i}: row_of(raw) and row(decode_record(raw)) differ")
    metrics.observe(rows)
    _, text = metrics.render()
    used, total = _compiled.report()
    return {
        "compiled": f"{used}/{total}",
        "records": records,
        "rows": json.loads(orjson.dumps(rows, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)),
        "counted": enricher.counted, "unpriced": enricher.unpriced,
        "metrics": text.decode(),
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(run(), sort_keys=True))
