"""The admin query API on known rows in a real chDB, each answer checked against SQL written here.

The rows go in through the real ClickHouse sink (some twice, under another batch id, so the API
must read with FINAL to count them once). The expected numbers come from hand-written SQL on the
test's own chDB handle, never from the API's builders, and every response is validated against
the OpenAPI file.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.error import HTTPError
from urllib.parse import quote, urlencode

import clickhouse_connect
import orjson
import pytest

from fastgw.analytics.admin_server import AdminServer
from fastgw.config import AdminConfig
from fastgw.requestlog.sinks.clickhouse import ClickHouseSink
from tests.analytics.openapi_check import check_response
from tests.analytics.seed import feedback_rows, now_ms, seed_rows

NANO = 1e9
FINAL = "fastgw.requests FINAL"


class Env:
    def __init__(self, url: str, client: Any, rows: list[dict[str, Any]], now: Any) -> None:
        self.url, self.client, self.rows, self.now = url, client, rows, now

    def get(self, path: str, params: dict[str, Any] | list[tuple[str, str]] | None = None,
            operation: str | None = None, expect: int = 200) -> Any:
        query = ("?" + urlencode(params, doseq=True)) if params else ""
        try:
            with urllib.request.urlopen(self.url + path + query, timeout=30) as resp:
                status, body = resp.status, resp.read()
        except HTTPError as exc:
            with exc:  # an unclosed error response is a ResourceWarning, an error under pytest here
                status, body = exc.code, exc.read()
        data = orjson.loads(body)
        assert status == expect, (status, data)
        if operation is not None:
            check_response(operation, status, data)
        return data

    def sql(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return list(self.client.query(sql, parameters=params or {}).result_rows)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("admin-chdb")
    dash = tmp_path_factory.mktemp("dashboard")
    (dash / "index.html").write_text("<!doctype html><title>fastgw</title>")
    (dash / "app.js").write_text("console.log(1)")
    now = now_ms()
    rows = seed_rows(now)
    sink = ClickHouseSink(chdb_path=str(data))
    sink.open()
    sink.write(rows[:300], "b1")
    sink.write(rows[300:], "b2")
    sink.write(rows[:40], "b3-resent")  # a re-send under another id: only FINAL counts it once
    sink.write(feedback_rows(rows, now), "b4")
    server = AdminServer(AdminConfig(port=0), f"chdb://{data}", dashboard_dir=dash)
    server.start()
    client = clickhouse_connect.get_client(interface="chdb", path=str(data))
    try:
        yield Env(f"http://127.0.0.1:{server.port}", client, rows, now)
    finally:
        server.stop()
        client.close()
        sink.close()


def ms(us: float) -> float | None:
    return None if math.isnan(us) else round(us / 1000, 3)


def since(env: Env, hours: float = 7) -> str:
    return (env.now - timedelta(hours=hours)).isoformat()


# --- summary ---------------------------------------------------------------------------------

@pytest.mark.parametrize("filters, where", [
    ({}, "1"),
    ({"model": ["gpt-4o", "llama-3"]}, "if(model_served = '', model_requested, model_served) IN ('gpt-4o', 'llama-3')"),
    ({"property": ["org=acme"]}, "properties['org'] = 'acme'"),
    ({"status": ["4xx"], "user": ["alice"]}, "status BETWEEN 400 AND 499 AND user_id = 'alice'"),
    ({"status": ["error"], "cache": ["hit", "none"]}, "status >= 400 AND cache_status IN ('hit', '')"),
    ({"cache": ["bypass"]}, "cache_status = 'bypass'"),
    ({"key": ["k1"], "provider": ["openai"], "session": ["s-1"]},
     "key_id = 'k1' AND provider = 'openai' AND session_id = 's-1'"),
])
def test_summary_matches_sql(env: Env, filters: dict[str, Any], where: str) -> None:
    got = env.get("/api/v1/summary", {"since": since(env), "until": env.now.isoformat(), **filters}, "getSummary")
    (n, errors, cost, unpriced, prompt, completion, hits, lookups, saved, limited, budget, lat, ttfb,
     reasoning) = env.sql(f"""
        SELECT count(), sum(status >= 400), sum(coalesce(cost_nanousd, 0)), sum(isNull(cost_nanousd) AND status < 400),
               sum(prompt_tokens), sum(completion_tokens), sum(cache_status = 'hit'),
               sum(cache_status IN ('hit', 'miss')), sum(cache_saved_nanousd),  -- a bypass looked nothing up
               sum(error_type = 'rate_limit_exceeded'), sum(error_type = 'budget_exceeded'),
               quantiles(0.5, 0.95, 0.99)(total_us), quantiles(0.5, 0.95, 0.99)(ttfb_us),
               sum(reasoning_tokens)
        FROM {FINAL} WHERE {where}""")[0]
    assert n > 0
    assert got["requests"] == n and got["errors"] == errors and got["unpriced"] == unpriced
    assert got["cost_usd"] == pytest.approx(cost / NANO)
    assert got["tokens"]["prompt"] == prompt and got["tokens"]["completion"] == completion
    assert got["tokens"]["total"] == prompt + completion and got["tokens"]["reasoning"] == reasoning
    assert got["cache_hits"] == hits and got["cache_saved_usd"] == pytest.approx(saved / NANO)
    assert got["cache_hit_rate"] == pytest.approx(hits / lookups if lookups else 0)
    assert got["rate_limited"] == limited and got["budget_refused"] == budget
    assert got["latency_ms"] == {"p50": ms(lat[0]), "p95": ms(lat[1]), "p99": ms(lat[2])}
    assert got["ttfb_ms"]["p99"] == ms(ttfb[2])


def test_summary_counts_a_resent_row_once(env: Env) -> None:
    raw = env.sql("SELECT count() FROM fastgw.requests")[0][0]
    got = env.get("/api/v1/summary", {"since": since(env)})
    assert raw == len(env.rows) + 40 and got["requests"] == len(env.rows)


def test_summary_of_an_empty_range_has_null_latency(env: Env) -> None:
    got = env.get("/api/v1/summary", {"since": "2001-01-01", "until": "2001-01-02"}, "getSummary")
    assert got["requests"] == 0 and got["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert got["range"] == {"since": "2001-01-01T00:00:00.000Z", "until": "2001-01-02T00:00:00.000Z"}


# --- time series -----------------------------------------------------------------------------

def test_timeseries_buckets_match_sql_and_fill_gaps(env: Env) -> None:
    start, end = env.now - timedelta(hours=8), env.now
    got = env.get("/api/v1/timeseries", {"since": start.isoformat(), "until": end.isoformat(), "bucket": "15m"},
                  "getTimeseries")
    assert got["bucket_seconds"] == 900
    first = int(start.timestamp()) // 900 * 900
    assert len(got["points"]) == math.ceil((math.ceil(end.timestamp()) - first) / 900)
    expected = {
        t: (n, e, c, rl, lat) for t, n, e, c, rl, lat in env.sql(f"""
            SELECT toUnixTimestamp(toStartOfFifteenMinutes(created_at)), count(), sum(status >= 400),
                   sum(coalesce(cost_nanousd, 0)),
                   sum(status = 429 AND error_type = 'rate_limit_exceeded'), quantiles(0.5, 0.95, 0.99)(total_us)
            FROM {FINAL} WHERE created_at >= {{s:DateTime64(3)}} AND created_at < {{e:DateTime64(3)}}
            GROUP BY 1""", {"s": start, "e": end})
    }
    seen = 0
    for point in got["points"]:
        from datetime import datetime
        t = int(datetime.fromisoformat(point["t"]).timestamp())
        n, e, c, rl, lat = expected.get(t, (0, 0, 0, 0, [math.nan] * 3))
        assert (point["requests"], point["errors"], point["rate_limited"]) == (n, e, rl), point["t"]
        assert point["cost_usd"] == pytest.approx(c / NANO)
        assert point["latency_ms"]["p95"] == ms(lat[1])
        seen += n
    assert seen == len(env.rows) and sum(1 for p in got["points"] if p["requests"] == 0) > 0


def test_timeseries_auto_bucket_stays_under_200_points(env: Env) -> None:
    got = env.get("/api/v1/timeseries", {"since": "7d"}, "getTimeseries")
    assert got["bucket_seconds"] == 3600 and len(got["points"]) <= 200
    assert sum(p["requests"] for p in got["points"]) == len(env.rows)


# --- breakdowns ------------------------------------------------------------------------------

BREAKDOWN_SQL = {
    "model": "if(model_served = '', model_requested, model_served)",
    "provider": "provider",
    "user": "user_id",
    "key": "key_id",
    "status": "toString(status)",
}


@pytest.mark.parametrize("dimension", [*BREAKDOWN_SQL, "session"])
@pytest.mark.parametrize("order_by", ["cost", "requests"])
def test_breakdown_matches_sql(env: Env, dimension: str, order_by: str) -> None:
    got = env.get(f"/api/v1/breakdown/{dimension}", {"since": since(env), "order_by": order_by, "limit": 100},
                  "getBreakdown")
    expr = BREAKDOWN_SQL.get(dimension, "session_id")
    where = "session_id != ''" if dimension == "session" else "1"
    expected = env.sql(f"""
        SELECT {expr} AS k, count() AS n, sum(coalesce(cost_nanousd, 0)) AS c, sum(status >= 400),
               sum(prompt_tokens + completion_tokens), sum(cache_status = 'hit')
        FROM {FINAL} WHERE {where} GROUP BY k ORDER BY {'c' if order_by == 'cost' else 'n'} DESC, k""")
    assert [g["key"] for g in got["groups"]] == [r[0] for r in expected]
    for g, (k, n, c, e, tok, hits) in zip(got["groups"], expected):
        assert (g["requests"], g["errors"], g["tokens"], g["cache_hits"]) == (n, e, tok, hits), k
        assert g["cost_usd"] == pytest.approx(c / NANO)


def test_breakdown_by_property_names_and_values(env: Env) -> None:
    names = env.get("/api/v1/breakdown/property", {"since": since(env), "order_by": "requests"}, "getBreakdown")
    expected = env.sql(f"SELECT k, count() AS n FROM {FINAL} ARRAY JOIN mapKeys(properties) AS k "
                       "GROUP BY k ORDER BY n DESC, k")
    assert [(g["key"], g["requests"]) for g in names["groups"]] == [tuple(r) for r in expected]
    values = env.get("/api/v1/breakdown/property", {"since": since(env), "name": "org", "order_by": "requests"},
                     "getBreakdown")
    expected = env.sql(f"SELECT properties['org'] AS v, count() AS n FROM {FINAL} "
                       "WHERE has(mapKeys(properties), 'org') GROUP BY v ORDER BY n DESC, v")
    assert values["name"] == "org"
    assert [(g["key"], g["requests"]) for g in values["groups"]] == [tuple(r) for r in expected]


def test_breakdown_limit_and_latency_order(env: Env) -> None:
    got = env.get("/api/v1/breakdown/user", {"since": since(env), "order_by": "latency", "limit": 2}, "getBreakdown")
    p95 = {k: lat[1] for k, lat in env.sql(f"SELECT user_id, quantiles(0.5, 0.95, 0.99)(total_us) FROM {FINAL} GROUP BY 1")}
    top = sorted(p95, key=lambda k: (-p95[k], k))[:2]
    assert [g["key"] for g in got["groups"]] == top


# --- request list ----------------------------------------------------------------------------

def walk(env: Env, params: dict[str, Any]) -> list[dict[str, Any]]:
    items, cursor, pages = [], None, 0
    while True:
        page = env.get("/api/v1/requests", {**params, **({"cursor": cursor} if cursor else {})}, "listRequests")
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert pages < 100


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_request_list_pages_through_everything_once(env: Env, order: str) -> None:
    items = walk(env, {"since": since(env), "limit": 37, "order": order})
    expected = env.sql(f"SELECT toString(request_id) FROM {FINAL} "
                       f"ORDER BY created_at {order}, request_id {order}")
    assert [i["request_id"] for i in items] == [r[0] for r in expected]


def test_request_list_filters_and_text_search(env: Env) -> None:
    items = walk(env, {"since": since(env), "limit": 50, "model": "gpt-4o-mini", "status": "200",
                       "property": "org=globex"})
    expected = env.sql(f"SELECT toString(request_id) FROM {FINAL} WHERE model_served = 'gpt-4o-mini' "
                       "AND status = 200 AND properties['org'] = 'globex' ORDER BY created_at DESC, request_id DESC")
    assert [i["request_id"] for i in items] == [r[0] for r in expected] and expected
    found = env.get("/api/v1/requests", {"since": since(env), "q": "NEEDLE 17"}, "listRequests")
    needles = env.sql(f"SELECT toString(request_id) FROM {FINAL} WHERE request_body LIKE '%needle 17%'"
                      " ORDER BY created_at DESC, request_id DESC")
    assert [i["request_id"] for i in found["items"]] == [r[0] for r in needles]


# --- one request -----------------------------------------------------------------------------

def test_request_detail_with_stream_text_feedback_and_scores(env: Env) -> None:
    first = env.rows[0]
    got = env.get(f"/api/v1/requests/{first['request_id']}", operation="getRequest")
    assert got["request_id"] == str(first["request_id"]) and got["status"] == first["status"]
    assert got["request_body"] == first["request_body"] and got["response_body"] == first["response_body"]
    assert got["feedback"]["rating"] is True
    assert {s["name"]: s["value"] for s in got["scores"]} == {"accuracy": 0.75, "helpful": True}
    streamed = next(r for r in env.rows if r.get("stream"))
    got = env.get(f"/api/v1/requests/{streamed['request_id']}", operation="getRequest")
    assert got["stream"] is True and got["response_text"] == "Hello!"
    assert got["feedback"] is None and got["scores"] == []
    assert got["properties"] == streamed["properties"]


def test_request_detail_unknown_and_malformed_ids(env: Env) -> None:
    env.get("/api/v1/requests/00000000-0000-0000-0000-000000000000", operation="getRequest", expect=404)
    bad = env.get("/api/v1/requests/1%27%20OR%201=1", operation="getRequest", expect=400)
    assert bad["error"]["param"] == "request_id"


# --- sessions --------------------------------------------------------------------------------

def test_session_tree(env: Env) -> None:
    got = env.get("/api/v1/sessions/tree-1", operation="getSession")
    tree = got["tree"]
    assert got["requests"] == 6 and got["name"] == "agent run"
    assert got["cost_usd"] == pytest.approx(sum(range(1, 7)) / 1000)
    assert tree["path"] == "/" and len(tree["requests"]) == 1  # the request without a path
    assert [c["path"] for c in tree["children"]] == ["/plan", "/review"]
    plan = tree["children"][0]
    assert [c["path"] for c in plan["children"]] == ["/plan/search", "/plan/write"]
    assert len(plan["children"][0]["requests"]) == 2 and plan["total_requests"] == 4
    assert plan["cost_usd"] == pytest.approx((1 + 2 + 3 + 4) / 1000)
    deep = tree["children"][1]["children"][0]["children"][0]
    assert deep["path"] == "/review/deep/er" and deep["requests"] and tree["children"][1]["requests"] == []
    assert got["duration_ms"] == pytest.approx(5000 + 250)
    env.get("/api/v1/sessions/nope", operation="getSession", expect=404)


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Asia/Tokyo"])
def test_session_times_do_not_depend_on_the_servers_time_zone(env: Env, zone: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """chDB's datetimes are UTC without a zone: read as local time they shifted by the offset."""
    import time as _time

    monkeypatch.setenv("TZ", zone)
    _time.tzset()
    try:
        got = env.get("/api/v1/sessions/tree-1", operation="getSession")
    finally:
        monkeypatch.undo()
        _time.tzset()
    assert got["duration_ms"] == pytest.approx(5000 + 250)
    assert got["ended_at"] > got["started_at"]


# --- hostile input ---------------------------------------------------------------------------

@pytest.mark.parametrize("path, params, param", [
    ("/api/v1/summary", {"since": "1h'; DROP TABLE fastgw.requests; --"}, "since"),
    ("/api/v1/summary", {"since": "yesterday"}, "since"),
    ("/api/v1/summary", {"until": "2026-13-45T99:00:00"}, "until"),
    ("/api/v1/summary", {"since": "1500-01-01"}, "since"),
    ("/api/v1/summary", {"since": "999999999w"}, "since"),
    ("/api/v1/summary", {"since": "2020-01-01", "until": "2026-01-01"}, "since"),
    ("/api/v1/summary", {"since": "1h", "until": "2h"}, "since"),
    ("/api/v1/summary", {"status": "200 OR 1=1"}, "status"),
    ("/api/v1/summary", {"status": "99999999999999999999"}, "status"),
    ("/api/v1/summary", {"property": "no-equals-sign"}, "property"),
    ("/api/v1/summary", {"cache": "maybe"}, "cache"),
    ("/api/v1/summary", {"model": "x" * 300}, "model"),
    ("/api/v1/summary", {"modle": "gpt-4o"}, "modle"),
    ("/api/v1/summary", [("since", "1h"), ("since", "2h")], "since"),
    ("/api/v1/timeseries", {"bucket": "1s"}, "bucket"),
    ("/api/v1/timeseries", {"bucket": "1m", "since": "30d"}, "bucket"),
    ("/api/v1/timeseries", {"bucket": "toStartOfHour(now())"}, "bucket"),
    ("/api/v1/breakdown/model", {"limit": "100000000000000000000"}, "limit"),
    ("/api/v1/breakdown/model", {"limit": "-1"}, "limit"),
    ("/api/v1/breakdown/model", {"order_by": "cost; DROP TABLE x"}, "order_by"),
    ("/api/v1/breakdown/model", {"name": "org"}, "name"),
    ("/api/v1/breakdown/" + quote("model) FROM system.users --"), {}, "dimension"),
    ("/api/v1/requests", {"cursor": "not-a-cursor"}, "cursor"),
    ("/api/v1/requests", {"cursor": "WzEsIngiXQ"}, "cursor"),  # [1,"x"]: valid base64, bad id
    ("/api/v1/requests", {"limit": "1e9"}, "limit"),
    ("/api/v1/requests", {"order": "desc, (SELECT 1)"}, "order"),
    ("/api/v1/requests", {"model": "a\x00b"}, "model"),
    ("/api/v1/requests", {"limit": "\u00b2"}, "limit"),  # a superscript two: str.isdigit() says yes
    ("/api/v1/breakdown/model", {"limit": "\u0663"}, "limit"),  # an Arabic-Indic three
    ("/api/v1/summary", {"since": "0001-01-01T00:00:00+01:00"}, "since"),
    ("/api/v1/summary", {"until": "9999-12-31T23:59:59-05:00"}, "until"),
    ("/api/v1/requests", {"cursor": "WzAsNV0"}, "cursor"),  # [0,5]: valid base64 JSON, the id not a string
    ("/api/v1/summary", [("user", str(i)) for i in range(300)], "query"),  # more fields than parsed
])
def test_hostile_parameters_get_a_400_naming_them(env: Env, path: str, params: Any, param: str) -> None:
    got = env.get(path, params, expect=400)
    check_response("getSummary", 400, got)
    assert got["error"]["param"] == param and got["error"]["type"] == "invalid_request_error"
    assert env.sql("SELECT count() FROM fastgw.requests")[0][0] == len(env.rows) + 40


def test_sql_in_values_is_data(env: Env) -> None:
    got = env.get("/api/v1/summary", {"user": "alice' OR '1'='1", "property": "org=acme' OR 1=1 --"}, "getSummary")
    assert got["requests"] == 0
    got = env.get("/api/v1/requests", {"q": "%' OR 1=1 --"}, "listRequests")
    assert got["items"] == []


def test_concurrent_requests_agree(env: Env) -> None:
    """Many at once share the store's handles; each answer is whole and the same."""
    from concurrent.futures import ThreadPoolExecutor

    paths = ["/api/v1/summary", "/api/v1/breakdown/model", "/api/v1/requests"] * 6
    with ThreadPoolExecutor(8) as pool:
        window = {"since": since(env), "until": env.now.isoformat()}
        answers = list(pool.map(lambda p: env.get(p, window), paths))
    for path, answer in zip(paths, answers):
        assert answer == answers[paths.index(path)]
    assert answers[0]["requests"] == len(env.rows)


def test_unknown_paths_and_health(env: Env) -> None:
    env.get("/api/v1/nope", expect=404)
    assert env.get("/api/v1/health", operation="getHealth") == {"status": "ok", "sink": "chdb"}


# --- dashboard files and /metrics ------------------------------------------------------------

def fetch(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read()


def test_dashboard_files_and_traversal(env: Env) -> None:
    assert fetch(env.url + "/")[:2] == (200, "text/html; charset=utf-8")
    assert fetch(env.url + "/static/app.js")[:2] == (200, "text/javascript; charset=utf-8")
    for path in ["/static/../../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd", "/static/..%2fseed.py",
                 "/static/", "/static/missing.js", "/etc/passwd"]:
        assert fetch(env.url + path)[0] == 404, path


def test_metrics_is_404_without_a_metrics_object(env: Env) -> None:
    status, _, body = fetch(env.url + "/metrics")
    assert status == 404 and orjson.loads(body)["error"]["type"] == "not_found_error"
