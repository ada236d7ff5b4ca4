"""Prometheus metrics from the exporter: known traffic through a real gateway, the text format parsed.

The records come from a real ``fastgw serve`` in front of the mock provider. The main test scrapes
``GET /metrics`` on the gateway's admin port, as Prometheus would, and checks every family against
the traffic it sent. The commit test pauses the gateway's own exporter (SIGSTOP) so the records
wait in the worker's ring, and drains them with an Exporter built in the test from the gateway's
config file, so that it can make the sink fail and look at ``exporter.metrics.render()`` between
attempts. Both are read with prometheus_client's own parser.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastgw import config as config_mod
from fastgw.analytics.metrics import GatewayMetrics, LabelCap, status_label
from fastgw.config import MetricsConfig
from fastgw.requestlog.exporter import Exporter
from fastgw.requestlog.paths import LogPaths
from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.helpers import GatewayProcess, exporter_pid, free_port, gateway_config, wait_for_port

MSGS = [{"role": "user", "content": "hello there"}]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of the exposition, keyed by (sample name, sorted labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(smp: Samples, name: str, **labels: str) -> float:
    return smp.get((name, tuple(sorted(labels.items()))), 0.0)


def total(smp: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in smp.items() if n == name and set(labels.items()) <= set(ls))



def drain_with_test_exporter(gw: GatewayProcess, expected: int) -> Exporter:
    """An Exporter on the gateway's rings and sink, flushed until ``expected`` records are in."""
    cfg = config_mod.load(str(gw.config_path))
    exporter = Exporter(cfg, LogPaths.for_config(cfg), cfg.server.workers)
    deadline = time.monotonic() + 15
    while exporter.stats.exported < expected and time.monotonic() < deadline:
        exporter._attach_drains()
        if not exporter.flush_once():
            time.sleep(0.05)
    assert exporter.stats.exported == expected, (exporter.stats, exporter.drains)
    return exporter


@pytest.fixture
def paused(start_gateway: Any, mock: MockUpstreamThread, tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway whose own exporter is stopped, so a test's Exporter takes the records instead."""
    gw = start_gateway(gateway_config(mock.url, keys={"backend": f"sqlite://{tmp_path}/keys.db"}))
    pid = exporter_pid(gw)
    time.sleep(0.3)  # let it settle into its idle wait (it has read nothing: the rings are empty)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield gw
    finally:
        os.kill(pid, signal.SIGCONT)


def send_known_traffic(gw: GatewayProcess) -> dict[str, int]:
    counts = defaultdict(int)
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
            counts["json"] += 1
        for _ in range(2):
            list(client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True))
            counts["stream"] += 1
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_headers={"x-mock-status": "500"})
            counts["upstream_500"] += 1
        cache = {"helicone-cache-enabled": "true"}
        client.chat.completions.create(model="gpt-4o", messages=MSGS, extra_headers=cache)
        client.chat.completions.create(model="gpt-4o", messages=MSGS, extra_headers=cache)
        counts["cache_miss"] = counts["cache_hit"] = 1
        policy = {"helicone-ratelimit-policy": "2;w=60"}
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_headers=policy)
            counts["limited_ok"] += 1
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_headers=policy)
        counts["refused"] += 1
    # A gateway key with a budget of $0: refused before it reaches the provider.
    made = subprocess.run([sys.executable, "-m", "fastgw", "keys", "create", "--name", "broke", "--budget-total", "0",
                           "--config", str(gw.config_path)], capture_output=True, text=True, timeout=30, check=True)
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=made.stdout.strip(), max_retries=0) as broke:
        with pytest.raises(openai.RateLimitError) as exc:
            broke.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
        assert exc.value.body["type"] == "insufficient_quota"  # type: ignore[index]
        counts["over_budget"] += 1
    with anthropic.Anthropic(base_url=gw.url + "/anthropic", api_key="sk-ant-test", max_retries=0) as claude:
        claude.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=MSGS)
        counts["anthropic"] += 1
    time.sleep(0.2)  # each record is pushed as its response ends
    return counts


def scrape(port: int, accept: str = "") -> tuple[str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.headers["Content-Type"], resp.read().decode()


def test_metrics_match_known_traffic(start_gateway: Any, mock: MockUpstreamThread, tmp_path: Path) -> None:
    """GET /metrics on the admin port of a running gateway, scraped as Prometheus would."""
    admin_port = free_port()
    gw = start_gateway(gateway_config(mock.url, keys={"backend": f"sqlite://{tmp_path}/keys.db"},
                                      logging={"batch_max_age": "200ms"}, admin={"port": admin_port}))
    wait_for_port(admin_port, proc=gw.proc)
    counts = send_known_traffic(gw)
    n = sum(counts.values())
    deadline = time.monotonic() + 15
    while True:
        content_type, text = scrape(admin_port)
        smp = samples(text)
        if total(smp, "fastgw_requests_total") >= n or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    om_type, om_text = scrape(admin_port, "application/openmetrics-text; version=1.0.0")
    assert om_type.startswith("application/openmetrics-text") and om_text.endswith("# EOF\n")
    rows = [orjson.loads(line) for line in (gw.log_dir / "sink" / "requests.jsonl").read_bytes().splitlines()]
    assert len(rows) == n

    req = "fastgw_requests_total"
    gpt_ok = counts["json"] + counts["stream"] + counts["limited_ok"]
    assert value(smp, req, provider="openai", model="gpt-4o-mini", status="200", cache="none") == gpt_ok
    assert value(smp, req, provider="openai", model="gpt-4o-mini", status="500", cache="none") == counts["upstream_500"]
    assert value(smp, req, provider="openai", model="gpt-4o-mini", status="429", cache="none") == counts["refused"]
    # Gateway keys are checked before the route is known: a budget refusal has no provider.
    assert value(smp, req, provider="none", model="gpt-4o-mini", status="429", cache="none") == counts["over_budget"]
    assert value(smp, req, provider="openai", model="gpt-4o", status="200", cache="miss") == 1
    assert value(smp, req, provider="openai", model="gpt-4o", status="200", cache="hit") == 1
    assert value(smp, req, provider="anthropic", model="claude-sonnet-4-6", status="200", cache="none") == 1
    assert total(smp, req) == n

    # Refusals: the gateway's own 429s (rate limit, budget), not a provider's.
    assert value(smp, "fastgw_refusals_total", reason="rate_limit_exceeded") == counts["refused"]
    assert value(smp, "fastgw_refusals_total", reason="budget_exceeded") == counts["over_budget"]
    assert value(smp, "fastgw_request_errors_total", provider="openai", error_type="rate_limit_exceeded") == 1

    # Histograms: one observation per request; the +Inf bucket equals the count.
    assert total(smp, "fastgw_request_duration_seconds_count") == n
    assert total(smp, "fastgw_gateway_overhead_seconds_count") == n
    assert total(smp, "fastgw_request_duration_seconds_bucket", le="+Inf") == n
    gw_sum = total(smp, "fastgw_gateway_overhead_seconds_sum")
    assert gw_sum == pytest.approx(sum(r["gateway_us"] for r in rows) / 1e6)
    slowest = max(r["total_us"] for r in rows) / 1e6
    assert total(smp, "fastgw_request_duration_seconds_sum") <= slowest * n

    # Tokens: the mock answers 5 pieces, so 5 completion tokens for every answer it gave (and for
    # the cache hit, which replays one); prompt tokens as the rows say.
    answered = gpt_ok + counts["cache_miss"] + counts["cache_hit"] + counts["anthropic"]
    assert total(smp, "fastgw_tokens_total", kind="completion") == 5 * answered
    gpt_rows = [r for r in rows if r.get("model_served") == "gpt-4o-mini" and r["status"] == 200]
    assert len(gpt_rows) == gpt_ok
    prompt = sum(r["prompt_tokens"] for r in gpt_rows)
    assert value(smp, "fastgw_tokens_total", provider="openai", model="gpt-4o-mini", kind="prompt") == prompt
    # Cost: gpt-4o-mini at $0.15 / $0.60 per million tokens, priced here from the tokens alone.
    expected_usd = (prompt * 0.15 + 5 * gpt_ok * 0.60) / 1e6
    assert value(smp, "fastgw_cost_usd_total", provider="openai", model="gpt-4o-mini") == pytest.approx(expected_usd)
    # The cache hit cost nothing and saved what the miss cost.
    miss_cost = next(r["cost_nanousd"] for r in rows if r.get("cache_status") == "miss")
    assert value(smp, "fastgw_cache_saved_usd_total", provider="openai", model="gpt-4o") == pytest.approx(miss_cost / 1e9)

    # The pipeline's own counters, read from the ring at scrape time.
    assert value(smp, "fastgw_log_records_pushed_total", worker="0") == n
    assert value(smp, "fastgw_log_records_exported_total", worker="0") == n
    assert value(smp, "fastgw_log_records_pending", worker="0") == 0
    assert value(smp, "fastgw_log_records_dropped_total", worker="0") == 0
    assert value(smp, "fastgw_log_ring_capacity_bytes", worker="0") == 64 * 1024 * 1024
    assert value(smp, "fastgw_exporter_rows_exported_total") == n
    assert value(smp, "fastgw_exporter_batches_total") >= 1
    assert value(smp, "fastgw_exporter_sink_failures_total") == 0
    assert value(smp, "fastgw_exporter_backoff_seconds") == 0
    assert value(smp, "fastgw_exporter_workers_attached") == 1


def test_rows_are_counted_only_once_their_batch_is_committed(paused: GatewayProcess, tmp_path: Path) -> None:
    """A sink whose disk is full fails the write: nothing is committed, so nothing is counted; the
    next exporter (as after a restart) reads the same records again and counts each once."""
    with openai.OpenAI(base_url=paused.url + "/v1", api_key="sk-test", max_retries=0) as client:
        for _ in range(4):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    time.sleep(0.2)
    cfg = config_mod.load(str(paused.config_path))
    full = tmp_path / "full-disk"
    full.mkdir()
    (full / "requests.jsonl").symlink_to("/dev/full")  # opens fine, every write fails with ENOSPC
    failing = dataclasses.replace(cfg, logging=dataclasses.replace(cfg.logging, sink=f"jsonl://{full}"))
    exporter = Exporter(failing, LogPaths.for_config(failing), 1)
    try:
        exporter._attach_drains()
        for _ in range(3):
            assert exporter.flush_once() == 0
        smp = samples(exporter.metrics.render()[1].decode())  # type: ignore[union-attr]
        assert exporter.stats.sink_failures == 3
        assert total(smp, "fastgw_requests_total") == 0
        assert value(smp, "fastgw_exporter_sink_failures_total") == 3
        assert value(smp, "fastgw_exporter_backoff_seconds") > 0
        assert value(smp, "fastgw_log_records_pending", worker="0") == 4
        assert value(smp, "fastgw_log_records_exported_total", worker="0") == 0
        # Parked while the sink is down: out of the ring (counted exported there), not yet counted as rows.
        assert exporter.park() == 4
        smp = samples(exporter.metrics.render()[1].decode())  # type: ignore[union-attr]
        assert value(smp, "fastgw_exporter_records_parked_total") == 4
        assert value(smp, "fastgw_exporter_parked_files") == 1
        assert value(smp, "fastgw_exporter_parked_records") == 4
        assert value(smp, "fastgw_log_records_exported_total", worker="0") == 4
        assert total(smp, "fastgw_requests_total") == 0
    finally:
        exporter.close()
    exporter = drain_with_test_exporter(paused, 4)  # the parked file, as after a restart
    try:
        smp = samples(exporter.metrics.render()[1].decode())  # type: ignore[union-attr]
        assert value(smp, "fastgw_requests_total", provider="openai", model="gpt-4o-mini", status="200", cache="none") == 4
        assert value(smp, "fastgw_exporter_records_unparked_total") == 4
        assert value(smp, "fastgw_exporter_parked_files") == 0
        assert value(smp, "fastgw_exporter_parked_records") == 0
        assert value(smp, "fastgw_log_records_exported_total", worker="0") == 4
        assert value(smp, "fastgw_log_records_pending", worker="0") == 0
    finally:
        exporter.close()


# --- the parts, without a gateway ------------------------------------------------------------


def row(**fields: Any) -> dict[str, Any]:
    base = {"kind": "request", "provider": "openai", "model_served": "gpt-4o-mini", "status": 200,
            "total_us": 1000, "gateway_us": 50, "prompt_tokens": 1, "completion_tokens": 1}
    return {**base, **fields}


def test_labels_stay_bounded_whatever_clients_send() -> None:
    m = GatewayMetrics(MetricsConfig(max_models=3, max_providers=2), providers=["openai"])
    rows = [row(model_served=f"model-{i}", provider=f"target:https://h{i}.example", status=200 + i)
            for i in range(500)]
    m.observe(rows)
    smp = samples(m.render()[1].decode())
    series = [ls for (n, ls) in smp if n == "fastgw_requests_total"]
    models = {dict(ls)["model"] for ls in series}
    providers = {dict(ls)["provider"] for ls in series}
    statuses = {dict(ls)["status"] for ls in series}
    assert models == {"model-0", "model-1", "model-2", "other"}
    assert providers == {"target:https://h0.example", "target:https://h1.example", "other"}
    assert statuses <= {"200", "201", "204", "2xx", "3xx", "400", "401", "402", "403", "404", "408", "409",
                        "413", "422", "429", "431", "499", "4xx", "500", "502", "503", "504", "529", "5xx", "other"}
    assert total(smp, "fastgw_requests_total") == 500
    assert value(smp, "fastgw_metrics_label_overflow_total", label="model") == 497
    # A configured provider keeps its name even once the cap is reached.
    m.observe([row(provider="openai")])
    assert value(samples(m.render()[1].decode()), "fastgw_requests_total", provider="openai", model="other",
                 status="200", cache="none") == 1


def test_status_label_and_label_cap() -> None:
    assert [status_label(s) for s in (200, 206, 429, 418, 599, 0, 700)] == ["200", "2xx", "429", "4xx", "5xx", "other", "other"]
    cap = LabelCap(1, always=["a"])
    assert [cap(v) for v in ("a", "b", "c", "b", "", "x" * 101)] == ["a", "b", "other", "b", "none", "other"]
    assert cap.overflow == 2


def test_feedback_rows_and_missing_fields_are_harmless() -> None:
    m = GatewayMetrics(MetricsConfig())
    m.observe([{"kind": "feedback", "request_id": "x", "rating": True},
               {"kind": "request", "request_id": "y", "status": 400, "error_type": "invalid_header"}])
    smp = samples(m.render()[1].decode())
    assert value(smp, "fastgw_requests_total", provider="none", model="none", status="400", cache="none") == 1
    assert total(smp, "fastgw_requests_total") == 1
    assert value(smp, "fastgw_request_errors_total", provider="none", error_type="invalid_header") == 1


def test_histogram_buckets_are_cumulative_and_le_inclusive() -> None:
    m = GatewayMetrics(MetricsConfig())
    m.observe([row(total_us=50_000), row(total_us=50_001), row(total_us=400_000_000)])
    smp = samples(m.render()[1].decode())
    labels = {"provider": "openai", "model": "gpt-4o-mini"}
    b = "fastgw_request_duration_seconds_bucket"
    assert value(smp, b, le="0.05", **labels) == 1
    assert value(smp, b, le="0.1", **labels) == 2
    assert value(smp, b, le="300.0", **labels) == 2
    assert value(smp, b, le="+Inf", **labels) == 3
    assert value(smp, "fastgw_request_duration_seconds_sum", **labels) == pytest.approx(400.100001)


def test_retries_and_fallbacks_from_rows() -> None:
    m = GatewayMetrics(MetricsConfig())
    m.observe([row(retry_count=2, fallback_index=0), row(retry_count=1), row(fallback_index=-1)])
    smp = samples(m.render()[1].decode())
    assert value(smp, "fastgw_upstream_retries_total", provider="openai") == 3
    assert value(smp, "fastgw_fallbacks_total", provider="openai") == 1


def test_each_token_kind_cost_and_saving_is_summed_into_its_own_series() -> None:
    """fold_rows sums the token kinds by position, written out by hand: each must land in its own
    series (distinct values per kind, so a swap shows)."""
    m = GatewayMetrics(MetricsConfig())
    kinds = {"prompt": 3, "completion": 5, "cache_read": 7, "cache_write": 11, "reasoning": 13}
    one = row(**{f"{k}_tokens": v for k, v in kinds.items()}, cost_nanousd=17_000, cache_saved_nanousd=19_000,
              ttfb_us=2_000_000)
    m.observe([one, one, row(ttfb_us=0)])
    smp = samples(m.render()[1].decode())
    labels = {"provider": "openai", "model": "gpt-4o-mini"}
    for kind, n in kinds.items():
        assert value(smp, "fastgw_tokens_total", kind=kind, **labels) == 2 * n + {"prompt": 1, "completion": 1}.get(kind, 0)
    assert value(smp, "fastgw_cost_usd_total", **labels) == pytest.approx(34e-6)
    assert value(smp, "fastgw_cache_saved_usd_total", **labels) == pytest.approx(38e-6)
    assert value(smp, "fastgw_time_to_first_byte_seconds_count", **labels) == 2  # a zero TTFB is not observed
    assert value(smp, "fastgw_time_to_first_byte_seconds_sum", **labels) == pytest.approx(4.0)


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as parse_openmetrics,
    )

    m = GatewayMetrics(MetricsConfig())
    m.observe([row(), row(status=503)])
    content_type, body = m.render("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
    assert content_type.startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")
    fams = {f.name: f for f in parse_openmetrics(body.decode())}
    got = {(s.labels["status"], s.value) for s in fams["fastgw_requests"].samples if s.name == "fastgw_requests_total"}
    assert got == {("200", 1.0), ("503", 1.0)}
    assert m.render()[0] == "text/plain; version=0.0.4; charset=utf-8"
