"""Known rows for the admin API tests, written through the real ClickHouse sink into a chDB folder."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-6", "llama-3"]
PROVIDERS = {"gpt-4o": "openai", "gpt-4o-mini": "openai", "claude-sonnet-4-6": "anthropic", "llama-3": "local"}
USERS = ["alice", "bob", "carol", "", "dave"]
STATUSES = [200] * 14 + [400, 429, 500, 502, 499]
SSE = ('data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
       'data: {"choices":[{"delta":{"content":"lo!"}}]}\n\ndata: [DONE]\n\n')


def seed_rows(now: datetime, n: int = 600, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` requests spread over the six hours before ``now``, plus one session tree."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        model = rnd.choice(MODELS)
        status = rnd.choice(STATUSES)
        error_type = ""
        if status == 429:
            error_type = rnd.choice(["rate_limit_exceeded", "budget_exceeded", ""])
        elif status >= 400:
            error_type = "upstream_error"
        cache = rnd.choice(["", "", "hit", "miss", "bypass"])
        stream = rnd.random() < 0.3
        props = {}
        if rnd.random() < 0.6:
            props["org"] = rnd.choice(["acme", "globex", "initech"])
        if rnd.random() < 0.3:
            props["env"] = rnd.choice(["prod", "dev"])
        rows.append({
            "kind": "request",
            "request_id": uuid.UUID(int=rnd.getrandbits(128)),
            # Whole milliseconds, like every logged row (DateTime64(3)).
            "created_at": now - timedelta(milliseconds=rnd.randrange(6 * 3600 * 1000)),
            "total_us": rnd.randrange(1_000, 5_000_000), "ttfb_us": rnd.randrange(500, 900_000),
            "upstream_us": rnd.randrange(500, 4_000_000), "gateway_us": rnd.randrange(50, 900),
            "method": "POST", "path": "/v1/chat/completions", "provider": PROVIDERS[model],
            "model_requested": model, "model_served": "" if status == 429 else model,
            "status": status, "error_type": error_type, "error_message": "boom" if error_type else "",
            "stream": stream,
            "prompt_tokens": rnd.randrange(0, 3000), "completion_tokens": rnd.randrange(0, 1500),
            "cache_read_tokens": rnd.randrange(0, 100), "reasoning_tokens": rnd.randrange(0, 50),
            "cost_nanousd": None if rnd.random() < 0.1 else rnd.randrange(0, 20_000_000),
            "user_id": rnd.choice(USERS), "properties": props,
            "session_id": rnd.choice(["", "", "", "s-1", "s-2"]), "session_path": "",
            "cache_status": cache, "cache_saved_nanousd": rnd.randrange(0, 5_000_000) if cache == "hit" else 0,
            "key_id": rnd.choice(["", "k1", "k2"]),
            "request_body": f'{{"messages":[{{"role":"user","content":"needle {i}"}}]}}',
            "response_body": SSE if stream else f'{{"choices":[{{"message":{{"content":"answer {i}"}}}}]}}',
        })
    base = now - timedelta(minutes=30)
    for j, path in enumerate(["/plan", "/plan/search", "/plan/search", "/plan/write", "", "/review/deep/er"]):
        rows.append({
            "kind": "request", "request_id": uuid.UUID(int=rnd.getrandbits(128)),
            "created_at": base + timedelta(seconds=j), "total_us": 250_000, "provider": "openai",
            "model_requested": "gpt-4o", "model_served": "gpt-4o", "status": 200,
            "cost_nanousd": 1_000_000 * (j + 1), "session_id": "tree-1", "session_path": path,
            "session_name": "agent run", "path": "/v1/chat/completions", "method": "POST",
        })
    return rows


def feedback_rows(rows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    first = rows[0]["request_id"]
    return [
        {"kind": "feedback", "request_id": first, "created_at": now - timedelta(seconds=5), "rating": False},
        {"kind": "feedback", "request_id": first, "created_at": now, "rating": True},  # the latest wins
        {"kind": "score", "request_id": first, "name": "accuracy", "value": 0.75, "created_at": now},
        {"kind": "score", "request_id": first, "name": "helpful", "value": True, "created_at": now},
    ]


def now_ms() -> datetime:
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)
