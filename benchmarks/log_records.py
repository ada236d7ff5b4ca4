"""Realistic raw log records, as a worker pushes them: for the logging benchmarks.

The mix is what a chat-heavy deployment sends: three in four are JSON chat completions with
usage, one in four a stream whose usage arrived in the chunk the gateway asked for and hid. The
request and response bodies together are about ``body_bytes`` of varied text (1 KB by default),
so neither compression nor the tokenizer is flattered.
"""
from __future__ import annotations

import random
import sys
import time
import uuid
from pathlib import Path

try:
    from fastgw.requestlog.record import encode_record
except ImportError:  # not installed: run from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from fastgw.requestlog.record import encode_record
import orjson

from fastgw.testing import mock_payloads as mp

WORDS = ("the quick brown fox jumps over lazy dog model token stream cache user assistant system "
         "function call result json schema answer question retrieval context window latency").split()
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1")


def text(rng: random.Random, size: int) -> str:
    out, n = [], 0
    while n < size:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)[:size]


def make_records(count: int, body_bytes: int = 1024, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    half = max(64, body_bytes // 2)
    out = []
    now_ms = time.time_ns() // 1_000_000
    for i in range(count):
        model = MODELS[i % len(MODELS)]
        stream = i % 4 == 3
        prompt = text(rng, half - 80)
        request = ('{"model":"%s","messages":[{"role":"user","content":"%s"}]%s}'
                   % (model, prompt, ',"stream":true' if stream else "")).encode()
        answer = text(rng, half - 300 if not stream else half // 3)
        ptok = len(prompt) // 4
        if stream:
            pieces = tuple(answer[j:j + 40] for j in range(0, len(answer), 40))
            events = mp.chat_stream(f"chatcmpl-{i}", 1_700_000_000, model, pieces, ptok, include_usage=False)
            response = b"".join(events)
            hidden = mp.sse_data({"id": f"chatcmpl-{i}", "object": "chat.completion.chunk", "model": model,
                                  "choices": [], "usage": {"prompt_tokens": ptok, "completion_tokens": len(pieces),
                                                           "total_tokens": ptok + len(pieces)}}).decode()
        else:
            response = orjson.dumps(mp.chat_completion(f"chatcmpl-{i}", 1_700_000_000, model, (answer,), ptok))
            hidden = ""
        meta = {
            "kind": "request", "request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "created_at_ms": now_ms - i, "total_us": rng.randrange(50_000, 900_000), "ttfb_us": 40_000,
            "upstream_us": 39_000, "gateway_us": rng.randrange(40, 400), "method": "POST",
            "path": "/v1/chat/completions", "provider": "openai", "format": "openai",
            "target_url": "https://api.openai.com/v1/chat/completions", "status": 200, "error_type": "",
            "error_message": "", "client_left": False, "usage_injected": stream,
            "user_id": f"user-{rng.randrange(1000)}", "properties": {"env": "prod", "team": "search"},
            "session_id": f"s-{rng.randrange(100)}", "session_path": "/a/b", "session_name": "chat",
            "omit_request": False, "omit_response": False, "request_truncated": False, "response_truncated": False,
            "response_content_type": "text/event-stream" if stream else "application/json",
            "request_headers": "user-agent: OpenAI/Python 1.40.0\r\ncontent-type: application/json\r\nauthorization: [redacted]\r\n",
            "worker": 0,
        }
        if hidden:
            meta["hidden_usage"] = hidden
        out.append(encode_record(meta, request, response))
    return out
