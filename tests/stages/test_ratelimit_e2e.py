"""Rate limits through real gateways: Helicone-RateLimit-Policy and config policies, in memory and on
a real redis-server shared by several gateway processes. Requests go over plain HTTP (http.client)
so every 429 is seen as sent, without an SDK's retries in between.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, gateway_config
from tests.redis_server import RedisServer


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def post(gw: GatewayProcess, headers: dict[str, str], model: str = "gpt-4o-mini", content: str = "hi") -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": content}]})
        conn.request("POST", "/v1/chat/completions", body,
                     {"content-type": "application/json", "authorization": "Bearer sk-a", **headers})
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


@pytest.fixture(params=["memory", "redis"])
def gw(request: pytest.FixtureRequest, start_gateway: Callable[..., GatewayProcess], mock: MockUpstreamThread) -> GatewayProcess:
    ratelimit: dict[str, Any] = {}
    if request.param == "redis":
        ratelimit = {"backend": request.getfixturevalue("redis_server").url}
    return start_gateway(gateway_config(mock.url, ratelimit=ratelimit))


def test_per_user_quota_then_429_with_headers(gw: GatewayProcess) -> None:
    policy = {"Helicone-RateLimit-Policy": "3;w=60;s=user"}
    a = {**policy, "Helicone-User-Id": f"alice-{uuid.uuid4()}"}
    got = [post(gw, a) for _ in range(4)]
    assert [r.status for r in got] == [200, 200, 200, 429]
    assert [r.headers["helicone-ratelimit-remaining"] for r in got] == ["2", "1", "0", "0"]
    assert all(r.headers["helicone-ratelimit-limit"] == "3" for r in got)
    assert all(r.headers["helicone-ratelimit-policy"] == "3;w=60;u=request;s=user" for r in got)
    refused = got[3]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.json()["error"]["type"] == "requests"
    assert 1 <= int(refused.headers["retry-after"]) <= 20  # one request's worth of a 60 s window of 3
    assert int(refused.headers["helicone-ratelimit-reset"]) == 60
    # another user has a bucket of their own
    assert post(gw, {**policy, "Helicone-User-Id": f"bob-{uuid.uuid4()}"}).status == 200


def test_per_property_segments(gw: GatewayProcess) -> None:
    policy = {"Helicone-RateLimit-Policy": "2;w=60;s=org"}
    org_a, org_b = f"a-{uuid.uuid4()}", f"b-{uuid.uuid4()}"
    assert [post(gw, {**policy, "Helicone-Property-Org": org_a}).status for _ in range(3)] == [200, 200, 429]
    assert post(gw, {**policy, "Helicone-Property-Org": org_b}).status == 200


def test_missing_segment_and_bad_policy_are_400s_naming_the_header(gw: GatewayProcess) -> None:
    r = post(gw, {"Helicone-RateLimit-Policy": "3;w=60;s=user"})
    assert r.status == 400 and "Helicone-User-Id" in r.json()["error"]["message"]
    r = post(gw, {"Helicone-RateLimit-Policy": "3;w=60;s=cost-center"})
    assert r.status == 400 and "Helicone-Property-Cost-Center" in r.json()["error"]["message"]
    r = post(gw, {"Helicone-RateLimit-Policy": "3;w=30"})
    assert r.status == 400 and "Helicone-RateLimit-Policy" in r.json()["error"]["message"]
    assert "60" in r.json()["error"]["message"]
    assert post(gw, {}).status == 200  # and the server keeps serving


def test_the_window_refills(gw: GatewayProcess) -> None:
    """60 per 60 s: a burst of 60, refused at 61, and a request's worth is back a second later."""
    h = {"Helicone-RateLimit-Policy": "60;w=60;s=user", "Helicone-User-Id": f"u-{uuid.uuid4()}"}
    statuses = [post(gw, h).status for _ in range(61)]
    assert statuses[:60] == [200] * 60 and statuses[60] == 429
    time.sleep(1.2)
    assert post(gw, h).status == 200
    assert post(gw, h).status == 429


def test_decimal_quota(gw: GatewayProcess) -> None:
    h = {"Helicone-RateLimit-Policy": "2.5;w=60;s=user", "Helicone-User-Id": f"u-{uuid.uuid4()}"}
    assert [post(gw, h).status for _ in range(3)] == [200, 200, 429]


def test_cents_policy_spends_the_real_cost(gw: GatewayProcess) -> None:
    """0.01 cents is 100,000 nano-dollars; one gpt-4o answer from the mock costs more than that."""
    h = {"Helicone-RateLimit-Policy": "0.01;w=60;u=cents;s=user", "Helicone-User-Id": f"u-{uuid.uuid4()}"}
    first = post(gw, h, model="gpt-4o", content="please write a long answer " * 20)
    assert first.status == 200
    assert first.headers["helicone-ratelimit-policy"] == "0.01;w=60;u=cents;s=user"
    deadline = time.monotonic() + 5
    while (r := post(gw, h, model="gpt-4o")).status == 200:  # the charge lands just after the response
        assert time.monotonic() < deadline, "the cost was never charged"
        time.sleep(0.05)
    assert r.status == 429 and r.headers["helicone-ratelimit-remaining"] == "0"


def test_unknown_model_under_cents_is_not_charged(gw: GatewayProcess) -> None:
    h = {"Helicone-RateLimit-Policy": "0.01;w=60;u=cents;s=user", "Helicone-User-Id": f"u-{uuid.uuid4()}"}
    assert [post(gw, h, model="no-such-model-xyz").status for _ in range(3)] == [200, 200, 200]


def test_config_policies_per_user_and_model_and_the_stricter_wins(start_gateway: Callable[..., GatewayProcess],
                                                                   mock: MockUpstreamThread) -> None:
    gw = start_gateway(gateway_config(mock.url, ratelimit={"users": {"*": "3;w=60", "vip": "100;w=60"},
                                                             "models": {"gpt-4o": "2;w=60"}}))
    u = f"u-{uuid.uuid4()}"
    assert [post(gw, {"Helicone-User-Id": u}).status for _ in range(4)] == [200, 200, 200, 429]
    assert [post(gw, {"Helicone-User-Id": "vip"}).status for _ in range(4)] == [200] * 4
    assert [post(gw, {}, model="gpt-4o").status for _ in range(3)] == [200, 200, 429]
    # a header policy looser than the user's config policy: the config one still refuses
    u2 = f"u-{uuid.uuid4()}"
    loose = {"Helicone-User-Id": u2, "Helicone-RateLimit-Policy": "50;w=60"}
    got = [post(gw, loose) for _ in range(4)]
    assert [r.status for r in got] == [200, 200, 200, 429]
    assert got[0].headers["helicone-ratelimit-policy"] == "3;w=60;u=request"  # the strictest is reported


def test_exactly_ten_of_fifty_across_instances_and_workers(start_gateway: Callable[..., GatewayProcess],
                                                           mock: MockUpstreamThread, redis_server: RedisServer) -> None:
    cfg = gateway_config(mock.url, ratelimit={"backend": redis_server.url})
    gws = [start_gateway(cfg), start_gateway(cfg, args=["--workers", "2"])]
    h = {"Helicone-RateLimit-Policy": "10;w=60"}
    # 50 fresh connections, alternating between the instances; the second's kernel spreads its
    # share over its two workers (SO_REUSEPORT), so three processes draw from one bucket
    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(lambda i: post(gws[i % 2], h).status, range(50)))
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 40


@pytest.mark.parametrize("fail_open", [True, False])
def test_redis_down_fails_open_or_closed_as_configured(start_gateway: Callable[..., GatewayProcess],
                                                       mock: MockUpstreamThread, redis_server: RedisServer,
                                                       fail_open: bool) -> None:
    gw = start_gateway(gateway_config(mock.url, ratelimit={"backend": redis_server.url, "fail_open": fail_open}))
    h = {"Helicone-RateLimit-Policy": "100;w=60"}
    assert post(gw, h).status == 200
    redis_server.kill()
    t0 = time.monotonic()
    got = [post(gw, h) for _ in range(5)]
    assert time.monotonic() - t0 < 3
    if fail_open:
        assert [r.status for r in got] == [200] * 5
        assert all("helicone-ratelimit-remaining" not in r.headers for r in got)
    else:
        assert [r.status for r in got] == [503] * 5
        assert got[0].json()["error"]["code"] == "rate_limiter_unavailable"
    assert "rate limiter unavailable" in gw.log()
    redis_server.start()
    deadline = time.monotonic() + 10
    while "helicone-ratelimit-remaining" not in (r := post(gw, h)).headers:
        assert time.monotonic() < deadline, "the limiter never came back"
        time.sleep(0.2)
    assert r.status == 200


def test_cache_and_limits_on_one_redis(start_gateway: Callable[..., GatewayProcess], mock: MockUpstreamThread,
                                       redis_server: RedisServer) -> None:
    """Both on the same Redis: a hit still counts against the limit, and both sets of headers come back."""
    gw = start_gateway(gateway_config(mock.url, ratelimit={"backend": redis_server.url},
                                      cache={"backend": redis_server.url}))
    h = {"Helicone-RateLimit-Policy": "3;w=60", "Helicone-Cache-Enabled": "true"}
    content = f"cached {uuid.uuid4()}"
    got = [post(gw, h, content=content) for _ in range(4)]
    assert [r.status for r in got] == [200, 200, 200, 429]
    assert [r.headers.get("helicone-cache") for r in got[:3]] == ["MISS", "HIT", "HIT"]
    assert [r.headers["helicone-ratelimit-remaining"] for r in got[:3]] == ["2", "1", "0"]
