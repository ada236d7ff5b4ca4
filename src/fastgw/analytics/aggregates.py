"""Summary, time series and breakdowns: aggregate reads over ``requests FINAL``.

Every statement here is a fixed template; the only pieces that vary are fragments picked from the
allow-lists in this module and ``filters`` (dimension expressions, sort orders), and every value
is a bound parameter. Money stays integer nano-dollars until the JSON is built.

The measures mean the same in all three answers: an error is a status of 400 or more; a cache hit
rate is over the requests that looked in the cache; a rate-limit refusal is the gateway's own 429
(``error_type = 'rate_limit_exceeded'``, what ``stages/ratelimit.py`` raises), a provider's 429 is
only an error; latency is the whole request (``total_us``) as P50/P95/P99 from ClickHouse's
``quantiles`` (exact up to 8,192 rows per group, a uniform sample beyond).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from fastgw.analytics import filters
from fastgw.analytics.filters import MODEL_EXPR, ParamError, Params, TimeRange, iso
from fastgw.analytics.store import LogStore

NANO = 1e9

# The aggregate columns every answer shares, in this order.
_MEASURES = """
    count() AS requests,
    countIf(status >= 400) AS errors,
    ifNull(sum(cost_nanousd), 0) AS cost,
    sum(prompt_tokens) + sum(completion_tokens) AS tokens,
    countIf(cache_status = 'hit') AS hits,
    quantiles(0.5, 0.95, 0.99)(total_us) AS lat"""

_SUMMARY = """
SELECT {measures},
    countIf(cost_nanousd IS NULL AND status < 400) AS unpriced,  -- an error with no usage was not billed
    sum(prompt_tokens), sum(completion_tokens), sum(cache_read_tokens), sum(cache_write_tokens),
    sum(reasoning_tokens),
    countIf(cache_status IN ('hit', 'miss')) AS cache_lookups,
    sum(cache_saved_nanousd),
    countIf(status = 429 AND error_type = 'rate_limit_exceeded'),
    countIf(status = 429 AND error_type = 'budget_exceeded'),
    quantiles(0.5, 0.95, 0.99)(ttfb_us)
FROM {table} FINAL
WHERE {where}"""

_SERIES = """
SELECT intDiv(toUnixTimestamp(created_at), {{f_bucket:UInt32}}) * {{f_bucket:UInt32}} AS t, {measures},
    sum(cache_saved_nanousd),
    countIf(status = 429 AND error_type = 'rate_limit_exceeded')
FROM {table} FINAL
WHERE {where}
GROUP BY t ORDER BY t"""

_BREAKDOWN = """
SELECT {key} AS key, {measures}{extra}
FROM {table} FINAL
WHERE {where}
GROUP BY key
ORDER BY {order}, key
LIMIT {{f_limit:UInt32}}"""

# dimension → the grouping expression (and any condition it needs). Property is handled apart.
DIMENSIONS = {
    "model": (MODEL_EXPR, None),
    "provider": ("provider", None),
    "user": ("user_id", None),
    "key": ("key_id", None),
    "status": ("toString(status)", None),
    "session": ("session_id", "session_id != ''"),
    "property": (None, None),
}
ORDERS = {
    "cost": "cost DESC",
    "requests": "requests DESC",
    "errors": "errors DESC",
    "tokens": "tokens DESC",
    "latency": "lat[2] DESC",
}
AUTO_BUCKETS = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
AUTO_MAX_POINTS = 200
MAX_POINTS = 2000


def _ms(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(value / 1000.0, 3)


def latency(values: list[float]) -> dict[str, float | None]:
    p50, p95, p99 = (list(values) + [math.nan] * 3)[:3]
    return {"p50": _ms(p50), "p95": _ms(p95), "p99": _ms(p99)}


def _usd(nano: int | None) -> float:
    return (nano or 0) / NANO


def _common(row: tuple[Any, ...]) -> dict[str, Any]:
    """The shared measures (``_MEASURES``) at the start of a row."""
    requests, errors, cost, tokens, hits, lat = row[:6]
    return {"requests": requests, "errors": errors, "cost_usd": _usd(cost), "tokens": tokens,
            "cache_hits": hits, "latency_ms": latency(lat)}


def summary(store: LogStore, p: Params) -> dict[str, Any]:
    tr = filters.time_range(p)
    w = filters.where(p, tr)
    p.finish()
    sql = _SUMMARY.format(measures=_MEASURES, table=store.table("requests"), where=w.sql)
    row = store.rows(sql, w.params)[0]
    base = _common(row)
    unpriced, prompt, completion, c_read, c_write, reasoning, lookups, saved, limited, budget, ttfb = row[6:]
    return {
        "range": tr.as_json(),
        "requests": base["requests"],
        "errors": base["errors"],
        "error_rate": base["errors"] / base["requests"] if base["requests"] else 0.0,
        "cost_usd": base["cost_usd"],
        "unpriced": unpriced,
        "tokens": {"prompt": prompt, "completion": completion, "cache_read": c_read,
                   "cache_write": c_write, "reasoning": reasoning, "total": prompt + completion},
        "cache_hits": base["cache_hits"],
        "cache_hit_rate": base["cache_hits"] / lookups if lookups else 0.0,
        "cache_saved_usd": _usd(saved),
        "rate_limited": limited,
        "budget_refused": budget,
        "latency_ms": base["latency_ms"],
        "ttfb_ms": latency(ttfb),
    }


def bucket_seconds(p: Params, tr: TimeRange) -> int:
    text = p.one("bucket", 16) or "auto"
    if text == "auto":
        for size in AUTO_BUCKETS:
            if tr.seconds / size <= AUTO_MAX_POINTS:
                return size
        return AUTO_BUCKETS[-1]
    size = int(filters.parse_duration(text, "bucket").total_seconds())
    if size < 60:
        raise ParamError("bucket", "must be at least 1m")
    if tr.seconds / size > MAX_POINTS:
        raise ParamError("bucket", f"gives more than {MAX_POINTS} buckets over the range; choose a larger one")
    return size


def timeseries(store: LogStore, p: Params) -> dict[str, Any]:
    tr = filters.time_range(p)
    size = bucket_seconds(p, tr)
    w = filters.where(p, tr)
    p.finish()
    sql = _SERIES.format(measures=_MEASURES, table=store.table("requests"), where=w.sql)
    found = {row[0]: row for row in store.rows(sql, {**w.params, "f_bucket": size})}
    points = []
    start = int(tr.since.timestamp()) // size * size
    for t in range(start, math.ceil(tr.until.timestamp()), size):
        row = found.get(t)
        if row is None:
            point = {"requests": 0, "errors": 0, "cost_usd": 0.0, "tokens": 0, "cache_hits": 0,
                     "cache_saved_usd": 0.0, "rate_limited": 0, "latency_ms": latency([])}
        else:
            point = {**_common(row[1:]), "cache_saved_usd": _usd(row[7]), "rate_limited": row[8]}
        points.append({"t": iso(datetime.fromtimestamp(t, UTC)), **point})
    return {"range": tr.as_json(), "bucket_seconds": size, "points": points}


def breakdown(store: LogStore, p: Params, dimension: str) -> dict[str, Any]:
    if dimension not in DIMENSIONS:
        raise ParamError("dimension", f"must be one of {', '.join(DIMENSIONS)}")
    tr = filters.time_range(p)
    name = p.one("name")
    order = p.choice("order_by", tuple(ORDERS), "cost")
    limit = p.integer("limit", 20, 1, 1000)
    w = filters.where(p, tr)
    p.finish()
    if name is not None and dimension != "property":
        raise ParamError("name", "only applies to dimension=property")
    params = {**w.params, "f_limit": limit}
    key, condition = DIMENSIONS[dimension]
    if dimension == "property" and name is None:
        key = "arrayJoin(mapKeys(properties))"
    elif dimension == "property":
        key, condition = "properties[{b_name:String}]", "mapContains(properties, {b_name:String})"
        params["b_name"] = name
    where_sql = w.sql if condition is None else f"{w.sql} AND {condition}"
    extra = ", min(created_at), max(created_at)" if dimension == "session" else ""
    sql = _BREAKDOWN.format(key=key, measures=_MEASURES, extra=extra, table=store.table("requests"),
                            where=where_sql, order=ORDERS[order])
    groups = []
    for row in store.rows(sql, params):
        group = {"key": str(row[0]), **_common(row[1:])}
        if extra:
            group["first_at"], group["last_at"] = iso(row[7]), iso(row[8])
        groups.append(group)
    return {"range": tr.as_json(), "dimension": dimension, "name": name, "order_by": order,
            "groups": groups}
