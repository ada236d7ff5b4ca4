"""Gateway keys through real gateway processes: keys made with the CLI as an operator would, used
with the openai SDK, checked against the mock provider's record of what reached it, and budgets
held under 50 concurrent requests on SQLite (two workers) and on a real Redis (two instances)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, gateway_config, sdk
from tests.redis_server import RedisServer

CHAT = [{"role": "user", "content": "hello there"}]
CLAUDE = "claude-sonnet-4-6"  # any name the mock answers to, and not on the SDK's deprecated list


def keys_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastgw", "keys", *args, "--config", str(config)],
                          check=False, capture_output=True, text=True, timeout=30)


def create_key(config: Path, *args: str) -> str:
    out = keys_cli(config, "create", *args)
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    assert key.startswith("fgw-") and "\n" not in key
    return key


def listed(config: Path) -> dict[str, dict[str, Any]]:
    out = keys_cli(config, "list", "--json")
    assert out.returncode == 0, out.stderr
    return {row["name"]: row for row in json.loads(out.stdout)}


def spent_nano(config: Path, name: str, period: str = "total") -> int:
    return round(listed(config)[name]["spend_usd"][period] * 1e9)


def settle(config: Path, name: str, period: str = "total", timeout: float = 5.0) -> int:
    """The key's spend once charges stop landing (they are made just after each answer)."""
    last, deadline = -1, time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = spent_nano(config, name, period)
        if now == last:
            return now
        last = now
        time.sleep(0.3)
    raise AssertionError("spend kept changing")


def client(gw: GatewayProcess, key: str, **headers: str) -> openai.OpenAI:
    return sdk(openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, default_headers=headers or None))


def status_of(call: Callable[[], Any]) -> int:
    try:
        call()
        return 200
    except openai.APIStatusError as exc:
        return exc.status_code


def chat(c: openai.OpenAI, model: str = "gpt-4o-mini", **kw: Any) -> Any:
    return c.chat.completions.create(model=model, messages=CHAT, **kw)  # type: ignore[arg-type]


def base(mock: MockUpstreamThread, tmp: Path, **extra: Any) -> dict[str, Any]:
    cfg = gateway_config(mock.url, keys={"backend": f"sqlite://{tmp}/keys.db", "cache_ttl": 0.5},
                         credentials={"team-openai": {"provider": "openai", "api_key": "sk-granted-upstream"}})
    cfg.update(extra)
    return cfg


@pytest.fixture
def gw(start_gateway: Callable[..., GatewayProcess], mock: MockUpstreamThread, tmp_path: Path) -> GatewayProcess:
    return start_gateway(base(mock, tmp_path, keys={"backend": f"sqlite://{tmp_path}/keys.db", "cache_ttl": 0.5,
                                                    "teams": {"research": {"total": 0.0}}}))


def one_request_cost(gw: GatewayProcess, tmp: Path) -> int:
    """What one gpt-4o-mini answer to CHAT costs, measured through a throwaway budgeted key."""
    name = f"probe-{uuid.uuid4().hex[:6]}"
    key = create_key(gw.config_path, "--name", name, "--budget-total", "1000", "--credential", "team-openai")
    chat(client(gw, key))
    cost = settle(gw.config_path, name)
    assert cost > 0
    return cost


# --- 401 / 403 / pass-through ------------------------------------------------------------------


def test_create_list_revoke_through_the_cli(gw: GatewayProcess) -> None:
    key = create_key(gw.config_path, "--name", "ci", "--model", "gpt-4o*", "--budget-day", "2.5",
                     "--credential", "team-openai", "--ratelimit", "100;w=60")
    row = listed(gw.config_path)["ci"]
    assert row["key_id"].startswith("key_") and row["hint"] == "fgw-..." + key[-4:]
    assert row["models"] == ["gpt-4o*"] and row["budget"]["day"] == 2.5 and row["revoked_at"] is None
    assert key[4:] not in (Path(gw.config_path).parent / "keys.db").read_bytes().decode("latin-1")  # hash only
    assert chat(client(gw, key)).choices[0].message.content
    again = keys_cli(gw.config_path, "create", "--name", "ci")
    assert again.returncode == 2 and "already named 'ci'" in again.stderr
    out = keys_cli(gw.config_path, "revoke", "ci")
    assert out.returncode == 0 and row["key_id"] in out.stderr
    assert listed(gw.config_path)["ci"]["revoked_at"] is not None
    time.sleep(0.7)  # keys.cache_ttl is 0.5 s: the worker's cached copy expires
    with pytest.raises(openai.AuthenticationError) as exc:
        chat(client(gw, key))
    assert "revoked" in exc.value.message and row["key_id"] in exc.value.message
    assert exc.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    assert gw.stop() == 0, gw.log()  # a worker that used the key store (and its writer thread) exits cleanly


def test_unknown_key_is_401_and_no_key_passes_when_not_required(gw: GatewayProcess) -> None:
    with pytest.raises(openai.AuthenticationError) as exc:
        chat(client(gw, "fgw-" + "x" * 43))
    assert exc.value.status_code == 401 and "invalid gateway key" in exc.value.message
    assert "x" * 43 not in exc.value.message  # the key is not echoed back
    assert chat(client(gw, "sk-my-own-openai-key")).choices  # no gateway key: passes as before


def test_model_not_allowed_is_403(gw: GatewayProcess) -> None:
    key = create_key(gw.config_path, "--name", "mini-only", "--model", "gpt-4o-mini", "--model", "claude-*",
                     "--credential", "team-openai")
    c = client(gw, key)
    assert chat(c).choices
    with pytest.raises(openai.PermissionDeniedError) as exc:
        chat(c, model="gpt-4o")
    assert "may not use model 'gpt-4o'" in exc.value.message and exc.value.body["code"] == "model_not_allowed"  # type: ignore[index]
    assert c.models.list().data  # a GET names no model: allowed


def test_auth_required_refuses_requests_without_a_valid_key(start_gateway: Callable[..., GatewayProcess],
                                                           mock: MockUpstreamThread, tmp_path: Path) -> None:
    gw = start_gateway(base(mock, tmp_path, auth={"required": True}))
    for api_key in ("sk-provider-key", "fgw-" + "y" * 43):
        with pytest.raises(openai.AuthenticationError) as exc:
            chat(client(gw, api_key))
        assert exc.value.status_code == 401
    key = create_key(gw.config_path, "--name", "ok", "--credential", "team-openai")
    assert chat(client(gw, key)).choices
    assert "without auth.required" not in gw.log()


MANUAL_LOG = {"providerRequest": {"url": "https://api.openai.com/v1/chat/completions",
                                   "json": {"model": "gpt-4o", "messages": CHAT}},
              "providerResponse": {"status": 200, "json": {"choices": []}},
              "timing": {"startTime": {"seconds": 1700000000, "milliseconds": 0},
                         "endTime": {"seconds": 1700000001, "milliseconds": 5}}}


def _post_raw(gw: GatewayProcess, path: str, body: Any, key: str | None) -> int:
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(gw.url + path, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def test_auth_required_covers_the_logging_endpoints(start_gateway: Callable[..., GatewayProcess],
                                                    mock: MockUpstreamThread, tmp_path: Path) -> None:
    """With auth.required, reporting a call or rating one needs a valid key as well; a key limited to
    other models or out of budget may still log (it calls nothing and spends nothing)."""
    gw = start_gateway(base(mock, tmp_path, auth={"required": True}))
    rid = str(uuid.uuid4())
    assert _post_raw(gw, "/custom/v1/log", MANUAL_LOG, None) == 401
    assert _post_raw(gw, f"/v1/request/{rid}/feedback", {"rating": True}, None) == 401
    assert _post_raw(gw, f"/v1/request/{rid}/score", {"scores": {"ok": 1}}, "fgw-" + "z" * 43) == 401
    key = create_key(gw.config_path, "--name", "logger", "--model", "claude-*", "--budget-total", "0")
    assert _post_raw(gw, "/custom/v1/log", MANUAL_LOG, key) == 200
    assert _post_raw(gw, f"/v1/request/{rid}/feedback", {"rating": True}, key) == 200
    assert _post_raw(gw, f"/v1/request/{rid}/score", {"scores": {"ok": 1}}, key) == 200
    assert _post_raw(gw, "/v1/chat/completions", {"model": "gpt-4o", "messages": CHAT}, key) == 403


def test_warning_when_listening_beyond_loopback_without_auth(start_gateway: Callable[..., GatewayProcess],
                                                            mock: MockUpstreamThread, tmp_path: Path) -> None:
    gw = start_gateway(base(mock, tmp_path, server={"host": "0.0.0.0"}))
    assert "listening on 0.0.0.0 without auth.required" in gw.log()


# --- the gateway key never reaches the provider --------------------------------------------------


def _received(mock: MockUpstreamThread, marker: str) -> list[tuple[str, str]]:
    found = [r for r in list(mock.mock.requests) if r.header("x-test-id") == marker]
    assert len(found) == 1
    return found[0].headers


@pytest.mark.parametrize("pure", [False, True], ids=["cython", "pure"])
def test_gateway_key_never_reaches_the_provider(start_gateway: Callable[..., GatewayProcess], mock: MockUpstreamThread,
                                                tmp_path: Path, pure: bool) -> None:
    gw = start_gateway(base(mock, tmp_path), pure=pure)  # both twins of the header parser
    granted = create_key(gw.config_path, "--name", "granted", "--credential", "team-openai")
    marker = uuid.uuid4().hex
    chat(client(gw, granted, **{"x-test-id": marker}), stream=False)
    headers = _received(mock, marker)
    assert ("authorization", "Bearer sk-granted-upstream") in headers
    assert not any("fgw-" in v for _, v in headers), headers

    # Helicone-Auth carries the gateway key; the client's own provider key passes through
    bare = create_key(gw.config_path, "--name", "bare")
    marker = uuid.uuid4().hex
    chat(client(gw, "sk-clients-own", **{"Helicone-Auth": f"Bearer {bare}", "x-test-id": marker}))
    headers = _received(mock, marker)
    assert ("authorization", "Bearer sk-clients-own") in headers
    assert not any("fgw-" in v for _, v in headers), headers

    # the gateway key alone, and no credential for the provider: refused, not sent upstream bare
    marker = uuid.uuid4().hex
    with pytest.raises(openai.PermissionDeniedError) as exc:
        chat(client(gw, bare, **{"x-test-id": marker}))
    assert "no credential for provider 'openai'" in exc.value.message
    assert not [r for r in list(mock.mock.requests) if r.header("x-test-id") == marker]


# --- per-key rate limits ---------------------------------------------------------------------


def test_per_key_rate_limit_policy(gw: GatewayProcess) -> None:
    a = create_key(gw.config_path, "--name", "rl-a", "--ratelimit", "3;w=60", "--credential", "team-openai")
    b = create_key(gw.config_path, "--name", "rl-b", "--ratelimit", "3;w=60", "--credential", "team-openai")
    ca = client(gw, a)
    got = [ca.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=CHAT) for _ in range(3)]  # type: ignore[arg-type]
    assert [r.headers["helicone-ratelimit-remaining"] for r in got] == ["2", "1", "0"]
    assert got[0].headers["helicone-ratelimit-policy"] == "3;w=60;u=request"
    with pytest.raises(openai.RateLimitError) as exc:
        chat(ca)
    assert exc.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert chat(client(gw, b)).choices  # the same policy on another key is another bucket
    assert chat(client(gw, "sk-no-gateway-key")).choices  # and requests without a key are not limited


# --- budgets -------------------------------------------------------------------------------------


def test_team_budget_is_shared_by_its_keys_and_streams_are_charged(start_gateway: Callable[..., GatewayProcess],
                                                                   mock: MockUpstreamThread, tmp_path: Path) -> None:
    probe_gw = start_gateway(base(mock, tmp_path))
    cost = one_request_cost(probe_gw, tmp_path)
    team_total = 3.5 * cost / 1e9  # three answers leave the team under it; a fourth (any answer) crosses it
    gw = start_gateway(base(mock, tmp_path, keys={"backend": f"sqlite://{tmp_path}/keys.db", "cache_ttl": 0.5,
                                                    "teams": {"research": {"total": team_total}}}))
    a = create_key(gw.config_path, "--name", "team-a", "--team", "research", "--credential", "team-openai")
    b = create_key(gw.config_path, "--name", "team-b", "--team", "research", "--credential", "team-openai")
    ca, cb = client(gw, a), client(gw, b)
    chat(ca)
    assert settle(gw.config_path, "team-a") == 0  # a team budget counts on the team, not the key
    for c in (cb, ca):
        time.sleep(0.3)
        assert status_of(lambda: chat(c)) == 200
    time.sleep(0.3)
    assert round(listed(gw.config_path)["team-b"]["team_spend_usd"]["total"] * 1e9) == 3 * cost  # 3 < 3.5: under
    # a streamed answer is charged from its usage chunk (asked for by the gateway, hidden from the client);
    # without that charge the team would still be under its budget
    chunks = list(chat(cb, stream=True))
    assert chunks and all(ch.usage is None for ch in chunks)
    time.sleep(0.3)
    for c in (ca, cb):
        with pytest.raises(openai.RateLimitError) as exc:
            chat(c)
        assert "team 'research' is over its total budget" in exc.value.message
        assert exc.value.body["type"] == "insufficient_quota"  # type: ignore[index]
        assert exc.value.response.headers["x-should-retry"] == "false"
    rows = listed(gw.config_path)
    assert round(rows["team-a"]["team_spend_usd"]["total"] * 1e9) > 3 * cost
    assert rows["team-a"]["team_spend_usd"] == rows["team-b"]["team_spend_usd"]
    assert "team research: spent" in keys_cli(gw.config_path, "list").stdout


def _hammer(gws: list[GatewayProcess], key: str, n: int) -> list[int]:
    """n requests from 50 threads at once, spread over the gateways; each answer takes 50 ms upstream."""
    clients = [client(gw, key, **{"x-mock-latency-ms": "50"}) for gw in gws]
    with ThreadPoolExecutor(50) as pool:
        return list(pool.map(lambda i: status_of(lambda: chat(clients[i % len(clients)])), range(n)))


def _budget_holds(gws: list[GatewayProcess], config: Path, cost: int) -> None:
    budget_usd = 10.5 * cost / 1e9  # ten answers leave it under; the eleventh crosses it
    key = create_key(config, "--name", "hammered", "--budget-total", repr(budget_usd), "--credential", "team-openai")
    statuses = _hammer(gws, key, 200)
    ok = statuses.count(200)
    assert statuses.count(200) + statuses.count(429) == 200, statuses
    spent = settle(config, "hammered")
    # every answer was charged exactly once: no increment lost between workers or instances
    assert spent == ok * cost, (spent, ok, cost)
    # at least 11 answers (the budget was not yet reached before them); beyond those 11, at most one
    # per request in flight when the budget ran out (50 threads: 49 others)
    assert 11 <= ok <= 11 + 49, statuses
    assert spent - round(budget_usd * 1e9) <= 50 * cost
    print(f"\nbudget of 10.5 answers under 50 concurrent requests on {len(gws)} gateway(s): {ok} of 200 "
          f"answered, spend {spent / cost:.1f} answers' worth ({spent} nano-USD)")
    # and once spent, everyone is refused
    assert _hammer(gws, key, 20) == [429] * 20
    assert settle(config, "hammered") == spent


def test_budget_under_50_concurrent_requests_on_two_sqlite_workers(start_gateway: Callable[..., GatewayProcess],
                                                                   mock: MockUpstreamThread, tmp_path: Path) -> None:
    gw = start_gateway(base(mock, tmp_path, server={"workers": 2}))
    _budget_holds([gw], gw.config_path, one_request_cost(gw, tmp_path))
    key_id = listed(gw.config_path)["hammered"]["key_id"]
    deadline = time.monotonic() + 15
    while {r["worker"] for r in _rows(gw) if r.get("key_id") == key_id} != {0, 1}:  # both workers drew on it
        assert time.monotonic() < deadline, "one worker served every request"
        time.sleep(0.3)


def test_keys_and_spend_shared_by_two_instances_on_redis(start_gateway: Callable[..., GatewayProcess],
                                                          mock: MockUpstreamThread, tmp_path: Path,
                                                          redis_server: RedisServer) -> None:
    cfg = base(mock, tmp_path)
    cfg["keys"] = {"backend": redis_server.url, "cache_ttl": 0.5}
    gws = [start_gateway(cfg), start_gateway(cfg)]
    cost = one_request_cost(gws[0], tmp_path)
    # made through the CLI against Redis, used on both instances; the spend of one is the other's
    key = create_key(gws[0].config_path, "--name", "fleet", "--budget-day", repr(2.5 * cost / 1e9),
                     "--credential", "team-openai")
    assert status_of(lambda: chat(client(gws[0], key))) == 200
    time.sleep(0.3)
    assert status_of(lambda: chat(client(gws[1], key))) == 200
    time.sleep(0.3)
    assert settle(gws[1].config_path, "fleet", "day") == 2 * cost
    assert status_of(lambda: chat(client(gws[0], key))) == 200  # 2 of 2.5 spent: under
    time.sleep(0.3)
    with pytest.raises(openai.RateLimitError) as exc:
        chat(client(gws[1], key))
    assert "daily budget" in exc.value.message and " UTC" in exc.value.message
    # and 50 at once across both instances
    _budget_holds(gws, gws[1].config_path, cost)


# --- the Anthropic SDK's x-api-key, the log row, and a store that is down --------------------------


def test_anthropic_sdk_key_in_x_api_key(start_gateway: Callable[..., GatewayProcess], mock: MockUpstreamThread,
                                        tmp_path: Path) -> None:
    import anthropic

    cfg = base(mock, tmp_path)
    cfg["credentials"]["team-anthropic"] = {"provider": "anthropic", "api_key": "sk-ant-granted"}
    gw = start_gateway(cfg)
    key = create_key(gw.config_path, "--name", "claude", "--model", "claude-*", "--credential", "team-anthropic")
    marker = uuid.uuid4().hex
    c = sdk(anthropic.Anthropic(base_url=gw.url + "/anthropic", api_key=key, max_retries=0,
                                default_headers={"x-test-id": marker}))
    msg = c.messages.create(model=CLAUDE, max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    assert msg.content
    headers = _received(mock, marker)
    assert ("x-api-key", "sk-ant-granted") in headers and not any("fgw-" in v for _, v in headers)
    with pytest.raises(anthropic.PermissionDeniedError):
        c.messages.create(model="gpt-4o", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.AuthenticationError):
        sdk(anthropic.Anthropic(base_url=gw.url + "/anthropic", api_key="fgw-" + "z" * 43, max_retries=0)).messages.create(
                model=CLAUDE, max_tokens=20, messages=[{"role": "user", "content": "hi"}])


def _rows(gw: GatewayProcess, timeout: float = 10.0, want: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [json.loads(line) for f in (gw.log_dir / "sink").glob("*.jsonl") for line in f.read_text().splitlines()]
        if len(rows) >= want:
            return rows
        time.sleep(0.2)
    raise AssertionError("no log rows")


def test_log_rows_carry_the_key_id_even_when_refused(gw: GatewayProcess) -> None:
    key = create_key(gw.config_path, "--name", "logged", "--model", "gpt-4o-mini", "--credential", "team-openai")
    key_id = listed(gw.config_path)["logged"]["key_id"]
    c = client(gw, key)
    chat(c)
    assert status_of(lambda: chat(c, model="gpt-4o")) == 403
    rows = _rows(gw, want=2)
    mine = sorted((r["status"], r.get("key_id")) for r in rows if r.get("key_id"))
    assert mine == [(200, key_id), (403, key_id)]
    assert not any(key in json.dumps(r) for r in rows)  # the key itself is never logged


def test_key_store_down_is_503_for_keyed_requests_only(start_gateway: Callable[..., GatewayProcess],
                                                       mock: MockUpstreamThread, tmp_path: Path,
                                                       redis_server: RedisServer) -> None:
    cfg = base(mock, tmp_path)
    cfg["keys"] = {"backend": redis_server.url, "cache_ttl": 0.5, "redis_timeout": 0.2}
    gw = start_gateway(cfg)
    key = create_key(gw.config_path, "--name", "budgeted", "--budget-day", "5", "--credential", "team-openai")
    assert status_of(lambda: chat(client(gw, key))) == 200
    redis_server.kill()
    try:
        with pytest.raises(openai.InternalServerError) as exc:  # the spend can't be read: no free pass
            chat(client(gw, key))
        assert exc.value.status_code == 503 and exc.value.body["code"] == "key_store_unavailable"  # type: ignore[index]
        assert chat(client(gw, "sk-no-gateway-key")).choices  # requests without a key don't need the store
    finally:
        redis_server.start()


def test_a_stream_the_client_leaves_is_charged_what_its_row_says(gw: GatewayProcess) -> None:
    """The client leaves before the usage chunk: the tokens produced so far are counted, and the
    budget is charged exactly the cost the log row carries (not nothing)."""
    key = create_key(gw.config_path, "--name", "leaver", "--budget-total", "100", "--credential", "team-openai")
    c = client(gw, key, **{"x-mock-chunks": "40", "x-mock-chunk-delay-ms": "30"})
    stream = chat(c, stream=True)
    got = [next(stream) for _ in range(5)]
    assert all(ch.choices and ch.choices[0].delta for ch in got[1:])
    stream.close()  # leaves mid-stream: the usage chunk never comes
    spent = settle(gw.config_path, "leaver")
    key_id = listed(gw.config_path)["leaver"]["key_id"]
    row = next(r for r in _rows(gw, want=1) if r.get("key_id") == key_id)
    assert row["usage_source"] == "counted" and row["error_type"] == "client_disconnected", row
    assert 0 < spent == row["cost_nanousd"], (spent, row)


def test_a_stream_without_usage_is_charged_its_counted_tokens(start_gateway: Callable[..., GatewayProcess],
                                                              mock: MockUpstreamThread, tmp_path: Path) -> None:
    """With the usage injection off, an OpenAI stream carries no usage: its tokens are counted and
    charged (the same cost as its log row), so streaming is never a way around a budget."""
    gw = start_gateway(base(mock, tmp_path, logging={"inject_stream_usage": False}))
    key = create_key(gw.config_path, "--name", "streamer", "--budget-total", "100", "--credential", "team-openai")
    chunks = list(chat(client(gw, key), stream=True))
    assert chunks and all(ch.usage is None for ch in chunks)
    spent = settle(gw.config_path, "streamer")
    key_id = listed(gw.config_path)["streamer"]["key_id"]
    row = next(r for r in _rows(gw, want=1) if r.get("key_id") == key_id)
    assert row["usage_source"] == "counted", row
    assert 0 < spent == row["cost_nanousd"], (spent, row)
