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
    from fastgw.requestlog.record import pack_record
except ImportError:  # not installed: run from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from fastgw.requestlog.record import pack_record
import orjson

from fastgw.app import context_from_raw
from fastgw.config import ProviderConfig
from fastgw.providers.table import Provider
from fastgw.testing import mock_payloads as mp

OPENAI = Provider.from_config("openai", ProviderConfig(base_url="https://api.openai.com"))

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
                                                           "total_tokens": ptok + len(pieces)}})
        else:
            response = orjson.dumps(mp.chat_completion(f"chatcmpl-{i}", 1_700_000_000, model, (answer,), ptok))
            hidden = b""
        raw = [(b"host", b"gw.test"), (b"user-agent", b"OpenAI/Python 1.40.0"), (b"content-type", b"application/json"),
               (b"authorization", b"Bearer sk-bench"), (b"helicone-user-id", b"user-%d" % rng.randrange(1000)),
               (b"helicone-property-env", b"prod"), (b"helicone-property-team", b"search"),
               (b"helicone-session-id", b"s-%d" % rng.randrange(100)), (b"helicone-session-path", b"/a/b"),
               (b"helicone-session-name", b"chat"),
               (b"helicone-request-id", str(uuid.UUID(int=rng.getrandbits(128), version=4)).encode())]
        t_start = time.perf_counter_ns() - rng.randrange(50_000, 900_000) * 1000
        ctx = context_from_raw(b"POST", b"/v1/chat/completions", raw, request, t_start)
        ctx.created_ms = now_ms - i
        ctx.provider, ctx.upstream_path = OPENAI, b"/v1/chat/completions"
        ctx.upstream_ns = 39_000_000
        ctx.usage_injected = stream
        ctx.hidden_usage = hidden
        # Packed by the worker's own code, so the exporter reads what it reads in production.
        out.append(pack_record(
            ctx, status=200, error=None, response_body=response, response_truncated=False,
            response_content_type="text/event-stream" if stream else "application/json",
            t_first_byte=t_start + 39_000_000 + rng.randrange(40, 400) * 1000, client_left=False,
            body_limit=256 * 1024, omit_request=False, omit_response=False, worker=0,
        ))
    return out
