"""Routing through a real gateway process in front of two mock providers: retries (Retry-After
measured), giving up with the last answer, Helicone-Fallbacks (and its allowlist), config fallback
chains, ejection and recovery of a failing target, latency-aware balancing, and the log rows.
Clients are the real openai SDK with its own retries off, so every status is the gateway's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import openai
import pytest

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, sdk

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def mocks() -> Iterator[tuple[MockUpstreamThread, MockUpstreamThread]]:
    with MockUpstreamThread() as a, MockUpstreamThread() as b:
        yield a, b


def config(a: MockUpstreamThread, b: MockUpstreamThread, **extra: Any) -> dict[str, Any]:
    return {
        "providers": {"a": {"base_url": a.url}, "b": {"base_url": b.url}, "openai": {"base_url": a.url}},
        "targets": {"allow": [a.url, b.url]},
        **extra,
    }


def client(gw: GatewayProcess, **headers: str) -> openai.OpenAI:
    return sdk(openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client", max_retries=0, timeout=30,
                             default_headers=headers))


def chat(gw: GatewayProcess, model: str = "gpt-4o-mini", **headers: str) -> Any:
    """The raw response (status, headers, parsed body), whatever the status."""
    try:
        raw = client(gw, **headers).chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
        raw.parse()  # the SDK reads the answer as a ChatCompletion
        return raw.http_response
    except openai.APIStatusError as exc:
        return exc.response


RETRY_FAST = {"Helicone-Retry-Enabled": "true", "Helicone-Retry-Min-Timeout": "10", "Helicone-Retry-Max-Timeout": "3000"}


def test_retry_waits_for_retry_after_then_succeeds(start_gateway: Callable[..., GatewayProcess], mocks: Any) -> None:
    a, b = mocks
    gw = start_gateway(config(a, b))
    a.mock.fail_first, a.mock.fail_status = 1, 429
    t0 = time.monotonic()
    r = chat(gw, **RETRY_FAST, **{"x-mock-retry-after": "1"})
    waited = time.monotonic() - t0
    assert r.status_code == 200 and a.mock.request_count == 2
    assert 1.0 <= waited < 2.5, waited  # the upstream's 1 s, not the 10 ms backoff
    gateway_ms = float(r.headers["server-timing"].split("dur=")[1])
    assert gateway_ms < 500, gateway_ms  # the wait was the upstream's, not the gateway's own time
    # The same failure without Retry-After: the backoff (10-20 ms) alone.
    a.mock.fail_first, a.mock.request_count = 1, 0
    t0 = time.monotonic()
    r = chat(gw, **RETRY_FAST, **{"x-mock-retry-after": ""})
    assert r.status_code == 200 and time.monotonic() - t0 < 0.5


def test_retry_after_is_capped_by_max_timeout(start_gateway: Callable[..., GatewayProcess], mocks: Any) -> None:
    a, b = mocks
    gw = start_gateway(config(a, b))
    a.mock.fail_first, a.mock.fail_status = 1, 503
    t0 = time.monotonic()
    r = chat(gw, **{**RETRY_FAST, "Helicone-Retry-Max-Timeout": "300", "x-mock-retry-after": "30"})
    assert r.status_code == 200 and 0.3 <= time.monotonic() - t0 < 1.5


def test_retries_give_up_with_the_last_upstream_answer(start_gateway: Callable[..., GatewayProcess], mocks: Any) -> None:
    a, b = mocks
    gw = start_gateway(config(a, b))
    a.mock.status = 503
    r = chat(gw, **{**RETRY_FAST, "Helicone-Retry-Num": "2"})
    assert r.status_code == 503 and a.mock.request_count == 3
    assert r.json()["error"]["message"] == "mock error 503"  # the provider's answer, not a gateway error
    a.mock.status = 400
    r = chat(gw, **RETRY_FAST)
    assert r.status_code == 400 and a.mock.request_count == 4  # not retryable: one attempt


def test_connection_errors_are_retried(start_gateway: Callable[..., GatewayProcess], mocks: Any) -> None:
    a, b = mocks
    gw = start_gateway(config(a, b))
    a.mock.reset = b"before"
    r = chat(gw, **{**RETRY_FAST, "Helicone-Retry-Num": "1"})
    assert r.status_code == 502 and a.mock.request_count == 2  # both attempts reset: the gateway's 502
    assert r.json()["error"]["type"] == "upstream_error"


@pytest.mark.parametrize("header,value", [("Helicone-Retry-Num", "many"), ("Helicone-Retry-Factor", "-2"),
                                          ("Helicone-Retry-Enabled", "maybe"), ("Helicone-Fallbacks", "[{]")])
def test_bad_routing_headers_are_400s_and_the_server_keeps_serving(
        start_gateway: Callable[..., GatewayProcess], mocks: Any, header: str, value: str) -> None:
    a, b = mocks
    gw = start_gateway(config(a, b))
    r = chat(gw, **{"Helicone-Retry-Enabled": "true", header: value})
    assert r.status_code == 400 and header in r.json()["error"]["message"]
    assert a.mock.request_count == 0
    assert chat(gw).status_code == 200


def fallbacks(*entries: dict[str, Any]) -> str:
    return json.dumps(list(entries))


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure"])  # entry headers re-parsed by either twin
def test_helicone_fallbacks_move_on_by_oncodes(start_gateway: Callable[..., GatewayProcess], mocks: Any, pure: bool) -> None:
    a, b = mocks
    gw = start_gateway(config(a, b), pure=pure)
    a.mock.status = 500
    header = fallbacks(
        {"target-url": a.url, "headers": {}, "onCodes": [429, {"from": 500, "to": 599}]},
        {"target-url": b.url, "headers": {"Authorization": "Bearer sk-b"}, "onCodes": [],
         "bodyKeyOverride": {"model": "gpt-4o"}},
    )
    r = chat(gw, **{"Helicone-Fallbacks": header})
    assert r.status_code == 200 and r.headers["helicone-fallback-index"] == "1"
    assert r.json()["model"] == "gpt-4o"
    sent = b.mock.requests[-1]
    assert sent.header("authorization") == "Bearer sk-b" and sent.json()["model"] == "gpt-4o"
    assert a.mock.requests[-1].header("authorization") == "Bearer sk-client"
    # A status outside the first entry's onCodes is returned from it.
    a.mock.status = 404
    r = chat(gw, **{"Helicone-Fallbacks": header})
    assert r.status_code == 404 and r.headers["helicone-fallback-index"] == "0"
    # The last entry's answer is returned whatever it is.
    a.mock.status, b.mock.status = 500, 503
    r = chat(gw, **{"Helicone-Fallbacks": header})
    assert r.status_code == 503 and r.headers["helicone-fallback-index"] == "1"


def test_helicone_fallbacks_outside_the_allowlist_are_403(start_gateway: Callable[..., GatewayProcess], mocks: Any) -> None:
    a, b = mocks
    gw = start_gateway({**config(a, b), "targets": {"allow": [a.url]}})
    header = fallbacks({"target-url": a.url, "onCodes": [500]}, {"target-url": b.url, "onCodes": []})
    r = chat(gw, **{"Helicone-Fallbacks": header})
    assert r.status_code == 403 and "targets.allow" in r.json()["error"]["message"]
    assert a.mock.request_count == 0 and b.mock.request_count == 0  # refused before anything is sent
    r = chat(gw, **{"Helicone-Fallbacks": fallbacks({"target-url": "http://user@" + a.url[7:], "onCodes": []})})
    assert r.status_code == 403


def route_config(a: MockUpstreamThread, b: MockUpstreamThread, strategy: str = "ordered", **health: Any) -> dict[str, Any]:
    return config(a, b, routes={"smart": {"strategy": strategy, "targets": [
        {"provider": "a", "model": "gpt-4o-mini", "api_key": "sk-route-a"},
        {"provider": "b", "model": "gpt-4o", "api_key": "sk-route-b"},
    ]}}, routing={"health": {"cooldown": "1s", **health}})


def test_config_fallback_chain_serves_from_the_next_target(start_gateway: Callable[..., GatewayProcess], mocks: Any) -> None:
    a, b = mocks
    gw = start_gateway(route_config(a, b))
    r = chat(gw, model="smart")
    assert r.status_code == 200 and r.headers["helicone-fallback-index"] == "0" and r.json()["model"] == "gpt-4o-mini"
    assert a.mock.requests[-1].header("authorization") == "Bearer sk-route-a"  # the target's key, not the client's
    a.mock.status = 503
    r = chat(gw, model="smart")
    assert r.status_code == 200 and r.headers["helicone-fallback-index"] == "1" and r.json()["model"] == "gpt-4o"
    assert b.mock.requests[-1].header("authorization") == "Bearer sk-route-b"
    assert b.mock.requests[-1].json()["model"] == "gpt-4o"
    # A model that names no route passes through untouched, with no fallback header.
    a.mock.status = 0
    r = chat(gw, model="gpt-4o-mini")
    assert r.status_code == 200 and "helicone-fallback-index" not in r.headers
    assert a.mock.requests[-1].header("authorization") == "Bearer sk-client"


def test_a_failing_target_is_ejected_then_probed_back(start_gateway: Callable[..., GatewayProcess], mocks: Any) -> None:
    a, b = mocks
    gw = start_gateway(route_config(a, b, consecutive_failures=2, cooldown="3s"))  # 3 s: room on a loaded machine
    a.mock.status = 503
    for _ in range(2):
        assert chat(gw, model="smart").headers["helicone-fallback-index"] == "1"
    assert a.mock.request_count == 2
    for _ in range(5):  # ejected: straight to b (the first tried, so no fallback), a sees nothing
        r = chat(gw, model="smart")
        assert r.status_code == 200 and r.headers["helicone-fallback-index"] == "0"
        assert r.json()["model"] == "gpt-4o"
    assert a.mock.request_count == 2
    a.mock.status = 0  # a recovers; after its cool-down one probe goes to it and closes it
    time.sleep(3.1)
    for _ in range(4):
        r = chat(gw, model="smart")
        assert r.headers["helicone-fallback-index"] == "0" and r.json()["model"] == "gpt-4o-mini"
    assert a.mock.request_count == 6


def test_a_failed_probe_ejects_again(start_gateway: Callable[..., GatewayProcess], mocks: Any) -> None:
    a, b = mocks
    gw = start_gateway(route_config(a, b, consecutive_failures=1, cooldown="2s"))
    a.mock.status = 503
    chat(gw, model="smart")
    time.sleep(2.1)
    chat(gw, model="smart")  # the probe: fails, ejected for 4 s now
    assert a.mock.request_count == 2
    time.sleep(2.1)
    chat(gw, model="smart")
    assert a.mock.request_count == 2
    time.sleep(2.5)  # past the 4 s
    chat(gw, model="smart")
    assert a.mock.request_count == 3


def test_latency_aware_balancing_shifts_traffic_to_the_faster_mock(
        start_gateway: Callable[..., GatewayProcess], mocks: Any) -> None:
    a, b = mocks
    a.mock.latency_ms, b.mock.latency_ms = 80.0, 5.0
    gw = start_gateway(route_config(a, b, "latency", latency_decay="2s"))
    served = [chat(gw, model="smart").json()["model"] for _ in range(60)]
    fast = served.count("gpt-4o")  # b's model
    assert fast >= 50, served
    assert a.mock.request_count >= 1  # a was measured, not ignored


def test_log_rows_carry_attempts_retries_and_the_fallback_index(
        start_gateway: Callable[..., GatewayProcess], mocks: Any, tmp_path: Path) -> None:
    a, b = mocks
    data = tmp_path / "chdb"
    cfg = route_config(a, b)
    gw = start_gateway({**cfg, "logging": {"sink": f"chdb://{data}"}})
    a.mock.status = 503
    r = chat(gw, model="smart", **{**RETRY_FAST, "Helicone-Retry-Num": "1"})
    assert r.status_code == 200
    rid = r.headers["helicone-id"]
    assert gw.stop() == 0, gw.log()
    c = clickhouse_connect.get_client(dsn=f"chdb://{data}")
    try:
        (row,) = c.query("SELECT retry_count, fallback_index, attempts, status, model_requested "
                         f"FROM fastgw.requests FINAL WHERE request_id = '{rid}'").result_rows
    finally:
        c.close()
    retry_count, fallback_index, attempts, status, requested = row
    assert (retry_count, fallback_index, status, requested) == (1, 0, 200, "smart")
    got = [(t["target"], t["status"], t["fallback_index"], t["error"]) for t in attempts]  # named tuples read back as dicts
    assert got == [("a/gpt-4o-mini", 503, -1, ""), ("a/gpt-4o-mini", 503, -1, ""), ("b/gpt-4o", 200, 0, "")]
    starts = [t["start_us"] for t in attempts]
    assert starts == sorted(starts) and all(t["dur_us"] > 0 for t in attempts)
    assert starts[1] - starts[0] >= attempts[0]["dur_us"] + 5_000  # the backoff (10 ms, jittered to 5-10) between them


def test_rate_limit_headers_lower_a_target_before_it_fails(
        start_gateway: Callable[..., GatewayProcess], mocks: Any) -> None:
    a, b = mocks
    gw = start_gateway(route_config(a, b))
    a.mock.ratelimit_remaining = 0  # a still answers 200, but says it has nothing left
    assert chat(gw, model="smart").json()["model"] == "gpt-4o-mini"
    for _ in range(3):
        r = chat(gw, model="smart")
        assert r.status_code == 200 and r.json()["model"] == "gpt-4o"  # b first while a is pressured
    assert a.mock.request_count == 1 and b.mock.request_count == 3


def test_cost_strategy_sends_to_the_cheapest_target(start_gateway: Callable[..., GatewayProcess], mocks: Any) -> None:
    a, b = mocks
    gw = start_gateway(config(a, b, routes={"cheap": {"strategy": "cost", "targets": [
        {"provider": "a", "model": "gpt-4o"}, {"provider": "b", "model": "gpt-4o-mini"}]}}))
    models = {chat(gw, model="cheap").json()["model"] for _ in range(5)}
    assert models == {"gpt-4o-mini"} and a.mock.request_count == 0


def test_weighted_route_splits_by_weight(start_gateway: Callable[..., GatewayProcess], mocks: Any) -> None:
    a, b = mocks
    gw = start_gateway(config(a, b, routes={"split": {"strategy": "weighted", "targets": [
        {"provider": "a", "model": "gpt-4o-mini", "weight": 1}, {"provider": "b", "model": "gpt-4o", "weight": 3}]}}))
    for _ in range(200):
        assert chat(gw, model="split").status_code == 200
    assert 120 <= b.mock.request_count <= 180 and a.mock.request_count + b.mock.request_count == 200


def test_a_stream_falls_back_before_its_first_byte(start_gateway: Callable[..., GatewayProcess], mocks: Any) -> None:
    a, b = mocks
    gw = start_gateway(route_config(a, b))
    a.mock.status = 503
    stream = client(gw).chat.completions.with_raw_response.create(model="smart", messages=MESSAGES, stream=True)
    assert stream.headers["helicone-fallback-index"] == "1"
    chunks = list(stream.parse())
    assert chunks and all(c.model == "gpt-4o" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_config_fallback_across_providers_through_translation(
        start_gateway: Callable[..., GatewayProcess], mocks: Any) -> None:
    a, b = mocks
    cfg = config(a, b, routes={"smart": {"targets": [
        {"provider": "a", "model": "gpt-4o-mini"},
        {"provider": "claude", "model": "claude-haiku-4-5", "api_key": "sk-ant-route"}]}})
    cfg["providers"]["claude"] = {"base_url": b.url, "format": "anthropic"}
    gw = start_gateway(cfg)
    a.mock.status = 503
    r = chat(gw, model="smart")
    assert r.status_code == 200 and r.headers["helicone-fallback-index"] == "1"
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "claude-haiku-4-5"  # OpenAI's shape, Claude's answer
    assert body["choices"][0]["message"]["content"] and body["usage"]["prompt_tokens"] > 0
    sent = b.mock.requests[-1]
    assert sent.path == "/v1/messages" and sent.header("x-api-key") == "sk-ant-route"
    assert sent.header("authorization") is None  # the client's OpenAI key does not follow it to Anthropic
    assert sent.json()["model"] == "claude-haiku-4-5" and sent.json()["messages"][0]["content"] in ("hi", [{"type": "text", "text": "hi"}])
    # Streamed, the same fallback arrives as OpenAI chunks.
    stream = client(gw).chat.completions.create(model="smart", messages=MESSAGES, stream=True)
    chunks = list(stream)
    assert chunks and "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_embeddings_route_among_openai_format_targets(start_gateway: Callable[..., GatewayProcess], mocks: Any) -> None:
    a, b = mocks
    cfg = config(a, b, routes={
        "embed": {"targets": [{"provider": "a", "model": "text-embedding-3-small"},
                              {"provider": "b", "model": "text-embedding-3-large"}]},
        "claude-only": {"targets": [{"provider": "anthropic", "model": "claude-haiku-4-5"}]},
    })
    cfg["providers"]["anthropic"] = {"base_url": b.url, "format": "anthropic"}
    gw = start_gateway(cfg)
    a.mock.status = 500
    c = client(gw)
    raw = c.embeddings.with_raw_response.create(model="embed", input="hello")
    assert raw.headers["helicone-fallback-index"] == "1" and raw.parse().model == "text-embedding-3-large"
    assert b.mock.requests[-1].path == "/v1/embeddings"
    with pytest.raises(openai.BadRequestError, match="only chat completions are translated"):
        c.embeddings.create(model="claude-only", input="hello")


def test_with_every_target_ejected_requests_still_go_out(start_gateway: Callable[..., GatewayProcess], mocks: Any) -> None:
    a, b = mocks
    gw = start_gateway(route_config(a, b, consecutive_failures=1, cooldown="30s", max_cooldown="1m"))
    a.mock.status, b.mock.status = 503, 502
    r = chat(gw, model="smart")
    assert r.status_code == 502 and r.json()["error"]["message"] == "mock error 502"  # both ejected now
    r = chat(gw, model="smart")  # not a gateway refusal: the least-bad target (a, back soonest) first, then b
    assert r.status_code == 502 and r.json()["error"]["message"] == "mock error 502"
    assert (a.mock.request_count, b.mock.request_count) == (2, 2)
    a.mock.status = 0
    r = chat(gw, model="smart")  # that request was a's probe: it is back at once, not after 30 s
    assert r.status_code == 200 and r.json()["model"] == "gpt-4o-mini"
    assert chat(gw, model="smart").headers["helicone-fallback-index"] == "0"
