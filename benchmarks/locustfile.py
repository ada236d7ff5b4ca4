"""Locust harness: realistic mixed traffic through the fastgw gateway (in front of the mock upstream).

Unlike run_bench.py, which isolates one request shape at a time to measure cost and latency, this
mixes what a gateway really sees: OpenAI chat completions (streamed, with
``stream_options.include_usage``, and not), embeddings, Anthropic messages (streamed and not,
through ``/anthropic/v1/messages``), from many end users (``Helicone-User-Id`` drawn from a pool)
tagged with ``Helicone-Property-Env`` / ``Helicone-Property-Feature``. Every response is checked
(status, shape, a complete stream), so "0 failures" means the gateway answered everything correctly.

Start a mock and a gateway (any free ports), then run headless with CSV output:

  .venv/bin/python -m fastgw.testing.mock_upstream --port MOCKPORT &
  .venv/bin/fastgw serve --config gw.yaml &        # providers openai/anthropic -> the mock, server.port
  .venv/bin/locust -f benchmarks/locustfile.py --headless -u 50 -r 10 -t 30s \\
      --host http://127.0.0.1:GWPORT --csv benchmarks/results/raw/locust

Knobs (environment variables):
  BENCH_USERS_POOL      distinct Helicone-User-Id values (default 200)
  BENCH_WAIT_MIN/MAX    think time between a simulated client's requests, seconds (default 0.05/0.2)
  BENCH_LATENCY_MS      x-mock-latency-ms: provider latency before the first byte (default 0)
  BENCH_CHUNK_DELAY_MS  x-mock-chunk-delay-ms: time between streamed events (default 0)
"""

from __future__ import annotations

import json
import os
import random

from locust import FastHttpUser, between, task

USERS_POOL = [f"user-{i:04d}" for i in range(int(os.environ.get("BENCH_USERS_POOL", "200")))]
ENVS = ("production", "production", "production", "staging", "dev")  # mostly production
FEATURES = ("chat", "search", "summarize", "autocomplete", "support-bot", "agent")
WAIT_MIN = float(os.environ.get("BENCH_WAIT_MIN", "0.05"))
WAIT_MAX = float(os.environ.get("BENCH_WAIT_MAX", "0.2"))
MOCK_HEADERS = {k: v for k, v in (("x-mock-latency-ms", os.environ.get("BENCH_LATENCY_MS")),
                                  ("x-mock-chunk-delay-ms", os.environ.get("BENCH_CHUNK_DELAY_MS"))) if v}
PROMPTS = (
    "hello",
    "Summarize the following paragraph in one sentence: the quick brown fox jumps over the lazy dog.",
    "Write a haiku about load balancers.",
    "What is the capital of France? Answer in one word.",
    "Explain keep-alive in HTTP/1.1 to a five year old. " * 4,
)


class GatewayUser(FastHttpUser):
    """One application talking to the gateway on behalf of its end users."""

    wait_time = between(WAIT_MIN, WAIT_MAX)
    # FastHttpUser keeps connections alive; this many concurrent connections per simulated client.
    concurrency = 1

    def on_start(self) -> None:
        self.env = random.choice(ENVS)
        self.feature = random.choice(FEATURES)

    # -- helpers

    def headers(self, anthropic: bool = False) -> dict[str, str]:
        h = {
            "content-type": "application/json",
            "Helicone-User-Id": random.choice(USERS_POOL),
            "Helicone-Property-Env": self.env,
            "Helicone-Property-Feature": self.feature,
            **MOCK_HEADERS,
        }
        if anthropic:
            h["x-api-key"] = "sk-ant-bench"
            h["anthropic-version"] = "2023-06-01"
        else:
            h["authorization"] = "Bearer sk-bench"
        return h

    def post_json(self, path: str, name: str, payload: dict, anthropic: bool, check) -> None:
        with self.client.post(path, data=json.dumps(payload), headers=self.headers(anthropic), name=name,
                              catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
                return
            try:
                problem = check(resp)
            except Exception as exc:  # malformed body
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                resp.failure(problem)
            else:
                resp.success()

    # -- OpenAI

    @task(6)
    def chat(self) -> None:
        payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": random.choice(PROMPTS)}]}

        def check(resp) -> str | None:
            body = resp.json()
            if body.get("object") != "chat.completion" or not body["choices"][0]["message"]["content"]:
                return "not a chat.completion"
            if "usage" not in body:
                return "no usage"
            return None

        self.post_json("/v1/chat/completions", "openai chat", payload, False, check)

    @task(4)
    def chat_stream(self) -> None:
        payload = {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
                   "messages": [{"role": "user", "content": random.choice(PROMPTS)}]}

        def check(resp) -> str | None:
            if not resp.headers.get("content-type", "").startswith("text/event-stream"):
                return f"content-type {resp.headers.get('content-type')!r}"
            events = [e[6:] for e in resp.text.split("\n\n") if e.startswith("data: ")]
            if not events or events[-1] != "[DONE]":
                return "stream not terminated by [DONE]"
            last = json.loads(events[-2])
            if not last.get("usage") or last.get("choices"):
                return "no final usage chunk (include_usage)"
            return None

        self.post_json("/v1/chat/completions", "openai chat stream", payload, False, check)

    @task(3)
    def embeddings(self) -> None:
        batch = random.choice((1, 1, 4, 16))
        payload = {"model": "text-embedding-3-small",
                   "input": [random.choice(PROMPTS) for _ in range(batch)] if batch > 1 else random.choice(PROMPTS)}

        def check(resp) -> str | None:
            body = resp.json()
            if body.get("object") != "list" or len(body["data"]) != batch:
                return f"expected {batch} embeddings"
            return None

        self.post_json("/v1/embeddings", "openai embeddings", payload, False, check)

    # -- Anthropic

    @task(3)
    def messages(self) -> None:
        payload = {"model": "claude-3-5-haiku-latest", "max_tokens": 256,
                   "messages": [{"role": "user", "content": random.choice(PROMPTS)}]}

        def check(resp) -> str | None:
            body = resp.json()
            if body.get("type") != "message" or body["content"][0]["type"] != "text":
                return "not an Anthropic message"
            return None

        self.post_json("/anthropic/v1/messages", "anthropic messages", payload, True, check)

    @task(2)
    def messages_stream(self) -> None:
        payload = {"model": "claude-3-5-haiku-latest", "max_tokens": 256, "stream": True,
                   "messages": [{"role": "user", "content": random.choice(PROMPTS)}]}

        def check(resp) -> str | None:
            text = resp.text
            if "event: message_start" not in text or "event: message_stop" not in text:
                return "stream without message_start/message_stop"
            return None

        self.post_json("/anthropic/v1/messages", "anthropic messages stream", payload, True, check)
