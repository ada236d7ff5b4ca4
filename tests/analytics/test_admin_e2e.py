"""A real ``fastgw serve`` (chDB sink, admin server beyond loopback with a key), real SDK traffic
through the mock provider, then the admin API, ``/metrics``, ``fastgw stats`` and ``fastgw tail``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import clickhouse_connect
import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.analytics.openapi_check import check_response
from tests.helpers import GatewayProcess, free_port, gateway_config, wait_for_port

KEY = "e2e-admin-key"
MSGS = [{"role": "user", "content": "hello there"}]


def admin_get(base: str, path: str, key: str = KEY) -> Any:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        body = resp.read()
        return orjson.loads(body) if resp.headers["Content-Type"] == "application/json" else body.decode()


def wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    """Polls until truthy. A 503 counts as not yet: until the exporter's first batch the log
    store has no tables, and the API says so."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:
                raise
            exc.close()
            value = None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastgw", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def send_traffic(gw: GatewayProcess) -> None:
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
        for i in range(4):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_headers={
                "helicone-user-id": f"user-{i % 2}", "helicone-property-team": "search"})
        list(client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True,
                                            stream_options={"include_usage": True}))
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o", messages=MSGS, extra_headers={"x-mock-status": "500"})
        limited = {"helicone-ratelimit-policy": "1;w=60;s=user", "helicone-user-id": "greedy"}
        client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_headers=limited)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_headers=limited)


def test_admin_api_stats_and_tail_on_a_running_gateway(start_gateway, mock: MockUpstreamThread, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "chdb"
    admin_port = free_port()
    gw = start_gateway(gateway_config(mock.url, logging={"sink": f"chdb://{data}", "batch_max_age": "200ms"},
                                      admin={"host": "0.0.0.0", "port": admin_port, "key": KEY}))
    wait_for_port(admin_port, proc=gw.proc)
    base = f"http://127.0.0.1:{admin_port}"
    send_traffic(gw)

    summary = wait_for(lambda: (s := admin_get(base, "/api/v1/summary?since=1h"))["requests"] >= 8 and s)
    assert summary, admin_get(base, "/api/v1/summary?since=1h")
    check_response("getSummary", 200, summary)
    assert summary["requests"] == 8 and summary["errors"] == 2 and summary["rate_limited"] == 1
    assert summary["tokens"]["total"] > 0 and summary["cost_usd"] > 0
    models = admin_get(base, "/api/v1/breakdown/model?since=1h&order_by=requests")
    check_response("getBreakdown", 200, models)
    assert {g["key"]: g["requests"] for g in models["groups"]} == {"gpt-4o-mini": 6, "gpt-4o": 2}
    teams = admin_get(base, "/api/v1/breakdown/property?since=1h&name=team")
    assert [(g["key"], g["requests"]) for g in teams["groups"]] == [("search", 4)]
    page = admin_get(base, "/api/v1/requests?since=1h&model=gpt-4o&limit=10")
    check_response("listRequests", 200, page)
    streamed = next(i for i in page["items"] if i["stream"])
    detail = admin_get(base, f"/api/v1/requests/{streamed['request_id']}")
    check_response("getRequest", 200, detail)
    assert detail["response_text"] and detail["response_body"].startswith("data:")

    metrics = admin_get(base, "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    assert sum(s.value for s in families["fastgw_requests"].samples if s.name == "fastgw_requests_total") == 8

    stats = cli("stats", "--since", "1h", "--admin", base, "--admin-key", KEY)
    assert stats.returncode == 0, stats.stderr
    assert "requests 8   errors 2 (25.0%)" in stats.stdout and "rate-limited 1" in stats.stdout
    lines = stats.stdout.splitlines()
    table = lines[lines.index("By model") + 1:]
    assert table[0].split()[:3] == ["model", "requests", "errors"]
    assert {row.split()[0]: row.split()[1] for row in table[1:3]} == {"gpt-4o-mini": "6", "gpt-4o": "2"}
    assert len({len(row) for row in table[:3]}) <= 2  # aligned columns (the header may be shorter)
    as_json = cli("stats", "--since", "1h", "--admin", base, "--admin-key", KEY, "--json")
    assert orjson.loads(as_json.stdout)["summary"]["requests"] == 8
    from_config = cli("stats", "--since", "1h", "--config", str(gw.config_path))  # 0.0.0.0 → loopback, key
    assert from_config.returncode == 0 and "requests 8 " in from_config.stdout, from_config.stderr
    refused = cli("stats", "--admin", base, "--admin-key", "wrong")
    assert refused.returncode == 1 and "401" in refused.stderr

    check_tail(gw, base)
    assert gw.stop() == 0
    client = clickhouse_connect.get_client(interface="chdb", path=str(data))
    try:
        assert client.query("SELECT count() FROM fastgw.requests FINAL").result_rows[0][0] == 8 + 3
    finally:
        client.close()


def check_tail(gw: GatewayProcess, base: str) -> None:
    """Tail prints the last request first, then each new one as it is logged, until Ctrl-C."""
    # Ctrl-C as a terminal sends it, whatever this process inherited: a shell's background job (a CI
    # runner's, `cmd &`) starts with SIGINT ignored, which a child would inherit and never see.
    proc = subprocess.Popen([sys.executable, "-m", "fastgw", "tail", "--admin", base, "-n", "1",
                             "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "FASTGW_ADMIN_KEY": KEY},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        assert wait_for(lambda: len(lines) >= 1, 15), proc.stderr.read() if proc.poll() is not None else "no output"  # type: ignore[union-attr]
        ids = [str(uuid.uuid4()) for _ in range(3)]
        with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
            for rid in ids:
                client.chat.completions.create(model="gpt-4o-mini", messages=MSGS,
                                               extra_headers={"helicone-request-id": rid})
        assert wait_for(lambda: all(any(rid in line for line in lines) for rid in ids), 20), lines
        assert len(lines) == 4, lines  # nothing printed twice
        assert all(" 200  openai/gpt-4o-mini " in line for line in lines[1:]), lines
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(10)
        reader.join(5)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert code == 0
