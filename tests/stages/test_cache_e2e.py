"""The response cache through real gateways, on both backends: the in-memory default and a real
redis-server. Clients are the official SDKs (and raw sockets where headers are the point); the
only stand-in is the provider. Each test marks its prompt, so upstream calls are counted exactly
from what the mock received.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import anthropic
import openai
import pytest

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, gateway_config
from tests.redis_server import RedisServer

CACHE = {"Helicone-Cache-Enabled": "true"}
CLAUDE = "claude-sonnet-4-6"


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gw(backend: str, start_gateway: Callable[..., GatewayProcess], mock: MockUpstreamThread,
       request: pytest.FixtureRequest) -> GatewayProcess:
    cache: dict[str, Any] = {}
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        cache = {"backend": server.url}
    return start_gateway(gateway_config(mock.url, cache=cache))


@pytest.fixture
def oai(gw: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-tenant-a", max_retries=0) as client:
        yield client


def marker() -> str:
    return uuid.uuid4().hex


def calls(mock: MockUpstreamThread, mark: str) -> int:
    """Requests the provider received whose body carries ``mark``."""
    return sum(1 for r in list(mock.mock.requests) if mark.encode() in r.body)


def chat(client: openai.OpenAI, mark: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"say hi {mark}"}],
        extra_headers={**CACHE, **(headers or {})}, **kw)


def test_miss_then_hit_serves_the_stored_answer(oai: openai.OpenAI, mock: MockUpstreamThread) -> None:
    m = marker()
    first = chat(oai, m)
    assert first.headers["helicone-cache"] == "MISS"
    second = chat(oai, m)
    assert second.headers["helicone-cache"] == "HIT"
    assert second.headers["helicone-cache-bucket-idx"] == "0"
    assert int(second.headers["helicone-cache-latency"]) >= 0
    assert second.parse().id == first.parse().id  # the stored answer, not a new one
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert calls(mock, m) == 1


def test_no_cache_headers_means_no_caching(oai: openai.OpenAI, mock: MockUpstreamThread) -> None:
    m = marker()
    for _ in range(2):
        r = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": m}])
        assert "helicone-cache" not in r.headers
    assert calls(mock, m) == 2


def test_key_ignores_json_key_order_and_whitespace(gw: GatewayProcess, mock: MockUpstreamThread) -> None:
    import http.client

    m = marker()
    bodies = [
        '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"%s"}]}' % m,
        '{ "messages" : [ { "content" : "%s", "role" : "user" } ],\n  "model" : "gpt-4o-mini" }' % m,
    ]
    seen = []
    for body in bodies:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json",
                                                            "authorization": "Bearer sk-x", **CACHE})
        resp = conn.getresponse()
        resp.read()
        seen.append(resp.getheader("helicone-cache"))
        conn.close()
    assert seen == ["MISS", "HIT"]
    assert calls(mock, m) == 1


def test_ttl_from_cache_control_expires(oai: openai.OpenAI, mock: MockUpstreamThread) -> None:
    m = marker()
    assert chat(oai, m, {"Cache-Control": "max-age=1"}).headers["helicone-cache"] == "MISS"
    assert chat(oai, m, {"Cache-Control": "max-age=1"}).headers["helicone-cache"] == "HIT"
    time.sleep(1.3)
    assert chat(oai, m, {"Cache-Control": "max-age=1"}).headers["helicone-cache"] == "MISS"
    assert calls(mock, m) == 2


def test_s_maxage_wins_over_max_age(oai: openai.OpenAI, mock: MockUpstreamThread) -> None:
    m = marker()
    h = {"Cache-Control": "max-age=3600, s-maxage=1"}
    chat(oai, m, h)
    time.sleep(1.3)
    assert chat(oai, m, h).headers["helicone-cache"] == "MISS"
    assert calls(mock, m) == 2


def test_seed_namespaces_the_cache(oai: openai.OpenAI, mock: MockUpstreamThread) -> None:
    m = marker()
    chat(oai, m, {"Helicone-Cache-Seed": "one"})
    assert chat(oai, m, {"Helicone-Cache-Seed": "two"}).headers["helicone-cache"] == "MISS"
    assert chat(oai, m, {"Helicone-Cache-Seed": "one"}).headers["helicone-cache"] == "HIT"
    assert calls(mock, m) == 2


def test_ignore_keys_leave_top_level_keys_out_of_the_key(oai: openai.OpenAI, mock: MockUpstreamThread) -> None:
    m = marker()
    h = {"Helicone-Cache-Ignore-Keys": "user, temperature"}
    chat(oai, m, h, user="alice", temperature=0.1)
    assert chat(oai, m, h, user="bob", temperature=0.9).headers["helicone-cache"] == "HIT"
    assert chat(oai, m, {}, user="bob").headers["helicone-cache"] == "MISS"  # without the header, user counts
    assert calls(mock, m) == 2


def test_bucket_fills_then_serves_every_slot(oai: openai.OpenAI, mock: MockUpstreamThread) -> None:
    m = marker()
    h = {"Helicone-Cache-Bucket-Max-Size": "3"}
    ids = [chat(oai, m, h) for _ in range(3)]
    assert [r.headers["helicone-cache"] for r in ids] == ["MISS"] * 3
    assert len({r.parse().id for r in ids}) == 3
    served = set()
    for _ in range(40):
        r = chat(oai, m, h)
        assert r.headers["helicone-cache"] == "HIT"
        served.add((r.headers["helicone-cache-bucket-idx"], r.parse().id))
    assert {idx for idx, _ in served} == {"0", "1", "2"}
    assert {i for _, i in served} == {r.parse().id for r in ids}
    assert calls(mock, m) == 3


def test_bad_cache_headers_are_400s_that_name_the_header(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        chat(oai, marker(), {"Helicone-Cache-Bucket-Max-Size": "21"})
    assert "Helicone-Cache-Bucket-Max-Size" in str(info.value)
    with pytest.raises(openai.BadRequestError) as info:
        chat(oai, marker(), {"Cache-Control": "max-age=soon"})
    assert "Cache-Control" in str(info.value)


def test_tenants_never_share_a_cache(gw: GatewayProcess, oai: openai.OpenAI, mock: MockUpstreamThread) -> None:
    m = marker()
    chat(oai, m)
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-tenant-b", max_retries=0) as other:
        assert chat(other, m).headers["helicone-cache"] == "MISS"
        assert chat(other, m).headers["helicone-cache"] == "HIT"
    assert calls(mock, m) == 2


def test_errors_are_not_stored(oai: openai.OpenAI, mock: MockUpstreamThread) -> None:
    m = marker()
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            chat(oai, m, {"x-mock-status": "500"})
    assert calls(mock, m) == 2


def test_read_only_and_save_only(oai: openai.OpenAI, mock: MockUpstreamThread) -> None:
    m = marker()
    r = oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": m}], extra_headers={"Helicone-Cache-Save": "true"})
    assert "helicone-cache" not in r.headers  # saving alone says nothing
    r2 = oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": m}], extra_headers={"Helicone-Cache-Read": "true"})
    assert r2.headers["helicone-cache"] == "HIT" and r2.parse().id == r.parse().id
    m2 = marker()
    for _ in range(2):  # read-only never stores
        r3 = oai.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": m2}], extra_headers={"Helicone-Cache-Read": "true"})
        assert r3.headers["helicone-cache"] == "MISS"
    assert calls(mock, m) == 1 and calls(mock, m2) == 2


def test_streams_replay_through_the_sdk_as_the_original(oai: openai.OpenAI, mock: MockUpstreamThread) -> None:
    m = marker()

    def run() -> tuple[str, list[dict[str, Any]]]:
        with oai.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": m}], stream=True,
            extra_headers={**CACHE, "x-mock-chunks": "6"},
        ) as resp:
            status = resp.headers["helicone-cache"]
            chunks = [c.model_dump() for c in resp.parse()]
        return status, chunks

    s1, first = run()
    s2, second = run()
    assert (s1, s2) == ("MISS", "HIT")
    assert second == first and len(first) >= 8  # same ids, same pieces, same finish chunk
    assert all(c["usage"] is None for c in second)  # the hidden usage chunk stays hidden on replay
    assert calls(mock, m) == 1


def test_anthropic_stream_replays(gw: GatewayProcess, mock: MockUpstreamThread) -> None:
    m = marker()
    with anthropic.Anthropic(base_url=gw.url + "/anthropic", api_key="sk-ant-a", max_retries=0) as claude:
        def run() -> tuple[str, str]:
            with claude.messages.with_streaming_response.create(
                model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": m}], stream=True,
                extra_headers=CACHE,
            ) as resp:
                status = resp.headers["helicone-cache"]
                text = "".join(e.delta.text for e in resp.parse() if e.type == "content_block_delta")
            return status, text

        s1, t1 = run()
        # The SDK stops reading at message_stop and may leave before the chunked body's end reaches
        # it; the gateway stores the stream once the upstream body ends, a moment later.
        time.sleep(0.3)
        s2, t2 = run()
    assert (s1, s2) == ("MISS", "HIT") and t1 == t2 and t1
    assert calls(mock, m) == 1


def test_a_cut_stream_is_never_stored(oai: openai.OpenAI, mock: MockUpstreamThread) -> None:
    m = marker()
    for _ in range(2):
        with pytest.raises(openai.APIError):
            for _chunk in oai.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": m}], stream=True,
                extra_headers={**CACHE, "x-mock-reset": "mid", "x-mock-chunks": "6"},
            ):
                pass
    assert calls(mock, m) == 2


def test_redis_killed_mid_run_requests_still_succeed(start_gateway: Callable[..., GatewayProcess],
                                                     mock: MockUpstreamThread, redis_server: RedisServer) -> None:
    gw = start_gateway(gateway_config(mock.url, cache={"backend": redis_server.url}))
    m = marker()
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-a", max_retries=0) as oai:
        chat(oai, m)
        assert chat(oai, m).headers["helicone-cache"] == "HIT"
        redis_server.kill()
        t0 = time.monotonic()
        for _ in range(5):
            r = chat(oai, m)
            assert r.http_response.status_code == 200
            assert r.headers.get("helicone-cache") is None  # bypassed: neither hit nor miss
        assert time.monotonic() - t0 < 3
        redis_server.start()
        deadline = time.monotonic() + 10
        while chat(oai, m).headers.get("helicone-cache") is None:  # back after the bypass period
            assert time.monotonic() < deadline, "cache never came back"
            time.sleep(0.2)
    assert "cache unavailable" in gw.log()


def test_hits_are_logged_with_the_cost_they_saved(start_gateway: Callable[..., GatewayProcess],
                                                  mock: MockUpstreamThread, tmp_path: Path) -> None:
    gw = start_gateway(gateway_config(mock.url))
    m = marker()
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-a", max_retries=0) as oai:
        miss, hit = chat(oai, m), chat(oai, m)
    assert gw.stop() == 0
    rows = {}
    for f in (gw.log_dir / "sink").glob("requests*.jsonl"):
        for line in f.read_text().splitlines():
            row = json.loads(line)
            rows[row["request_id"]] = row
    first, second = rows[miss.headers["helicone-id"]], rows[hit.headers["helicone-id"]]
    assert first["cache_status"] == "miss" and first["cost_nanousd"] > 0 and first["cache_saved_nanousd"] == 0
    assert second["cache_status"] == "hit" and second["cost_nanousd"] == 0
    assert second["cache_saved_nanousd"] == first["cost_nanousd"]
    assert second["prompt_tokens"] == first["prompt_tokens"]
