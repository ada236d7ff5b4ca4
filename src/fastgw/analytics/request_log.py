"""Reads of individual requests: the filtered list, one request's detail, a session's tree.

The list pages by keyset on ``(created_at, request_id)``, the table's natural order, so page N
costs what page 1 does and rows logged meanwhile never shift a page. The cursor is that pair,
base64-encoded: opaque to clients, and validated like any other parameter when it comes back.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from fastgw.analytics import filters
from fastgw.analytics.filters import MODEL_EXPR, ParamError, Params, iso
from fastgw.analytics.store import LogStore
from fastgw.errors import NotFound
from fastgw.requestlog.usage import stream_content

SESSION_MAX = 5000

# The columns of a RequestSummary, in the order ``_summary`` reads them.
_SUMMARY_COLS = (f"request_id, created_at, method, path, provider, {MODEL_EXPR}, status, stream, "
                 "total_us, ttfb_us, prompt_tokens, completion_tokens, cost_nanousd, user_id, "
                 "session_id, key_id, cache_status, error_type")
_ORDER = {"desc": ("<", "DESC"), "asc": (">", "ASC")}


def _summary(row: tuple[Any, ...]) -> dict[str, Any]:
    (rid, created, method, path, provider, model, status, stream, total_us, ttfb_us, prompt,
     completion, cost, user, session, key, cache, error_type) = row[:18]
    return {
        "request_id": str(rid), "created_at": iso(created), "method": method, "path": path,
        "provider": provider, "model": model, "status": status, "stream": bool(stream),
        "total_ms": total_us / 1000, "ttfb_ms": ttfb_us / 1000, "prompt_tokens": prompt,
        "completion_tokens": completion, "cost_usd": None if cost is None else cost / 1e9,
        "user_id": user, "session_id": session, "key_id": key, "cache_status": cache,
        "error_type": error_type,
    }


# --- the list ----------------------------------------------------------------------------------

def encode_cursor(created: datetime, request_id: Any) -> str:
    ms = round(created.replace(tzinfo=created.tzinfo or UTC).timestamp() * 1000)
    return base64.urlsafe_b64encode(orjson.dumps([ms, str(request_id)])).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, UUID]:
    try:
        ms, rid = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if type(ms) is not int or not 0 <= ms < 4102444800000:
            raise ValueError
        return datetime.fromtimestamp(ms / 1000, UTC), UUID(rid)
    except (ValueError, TypeError, AttributeError, binascii.Error, orjson.JSONDecodeError):
        raise ParamError("cursor", "not a cursor this API returned") from None


def list_requests(store: LogStore, p: Params) -> dict[str, Any]:
    tr = filters.time_range(p)
    w = filters.where(p, tr)
    limit = p.integer("limit", 50, 1, 500)
    compare, direction = _ORDER[p.choice("order", ("desc", "asc"), "desc")]
    cursor, q = p.one("cursor", 200), p.one("q", 200)
    p.finish()
    conds, params = [w.sql], {**w.params, "f_limit": limit + 1}
    if cursor is not None:
        params["c_at"], params["c_id"] = decode_cursor(cursor)
        conds.append(f"(created_at, request_id) {compare} ({{c_at:DateTime64(3, 'UTC')}}, {{c_id:UUID}})")
    if q is not None:
        params["f_q"] = q
        conds.append("(positionCaseInsensitive(request_body, {f_q:String}) > 0 OR "
                     "positionCaseInsensitive(response_body, {f_q:String}) > 0 OR "
                     "positionCaseInsensitive(error_message, {f_q:String}) > 0)")
    sql = (f"SELECT {_SUMMARY_COLS} FROM {store.table('requests')} FINAL WHERE {' AND '.join(conds)} "
           f"ORDER BY created_at {direction}, request_id {direction} LIMIT {{f_limit:UInt32}}")
    rows = store.rows(sql, params)
    page = rows[:limit]
    more = len(rows) > limit
    return {"items": [_summary(r) for r in page],
            "next_cursor": encode_cursor(page[-1][1], page[-1][0]) if more else None}


# --- one request -------------------------------------------------------------------------------

_DETAIL_COLS = (_SUMMARY_COLS + ", model_requested, model_served, target_url, error_message, upstream_us, "
                "gateway_us, cache_read_tokens, cache_write_tokens, reasoning_tokens, usage_source, "
                "cost_null_reason, cache_saved_nanousd, properties, session_path, session_name, "
                "retry_count, fallback_index, request_headers, request_body, response_body, "
                "request_truncated, response_truncated")


def request_id_param(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise ParamError("request_id", "must be a UUID") from None


def request_detail(store: LogStore, p: Params, request_id: str) -> dict[str, Any]:
    rid = request_id_param(request_id)
    p.finish()
    rows = store.rows(f"SELECT {_DETAIL_COLS} FROM {store.table('requests')} FINAL "
                      "WHERE request_id = {rid:UUID} LIMIT 1", {"rid": rid})
    if not rows:
        raise NotFound(f"no request {rid} in the log")
    row = rows[0]
    out = _summary(row)
    (model_requested, model_served, target_url, error_message, upstream_us, gateway_us, c_read,
     c_write, reasoning, usage_source, null_reason, saved, properties, session_path, session_name,
     retry_count, fallback_index, headers, request_body, response_body, req_trunc,
     resp_trunc) = row[18:]
    out.pop("prompt_tokens"), out.pop("completion_tokens")
    prompt, completion = row[10], row[11]
    text = stream_content("", out["path"], response_body.encode("utf-8", "surrogatepass")) if response_body else ""
    out.update({
        "model_requested": model_requested, "model_served": model_served, "target_url": target_url,
        "error_message": error_message, "upstream_ms": upstream_us / 1000, "gateway_ms": gateway_us / 1000,
        "tokens": {"prompt": prompt, "completion": completion, "cache_read": c_read,
                   "cache_write": c_write, "reasoning": reasoning, "total": prompt + completion},
        "usage_source": usage_source, "cost_null_reason": null_reason, "cache_saved_usd": saved / 1e9,
        "properties": dict(properties), "session_path": session_path, "session_name": session_name,
        "retry_count": retry_count, "fallback_index": fallback_index, "request_headers": dict(headers),
        "request_body": request_body, "response_body": response_body, "response_text": text or None,
        "request_truncated": bool(req_trunc), "response_truncated": bool(resp_trunc),
    })
    out["feedback"], out["scores"] = _feedback(store, rid), _scores(store, rid)
    return out


def _feedback(store: LogStore, rid: UUID) -> dict[str, Any] | None:
    rows = store.rows(f"SELECT rating, created_at FROM {store.table('feedback')} FINAL "
                      "WHERE request_id = {rid:UUID} ORDER BY created_at DESC LIMIT 1", {"rid": rid})
    if not rows:
        return None
    rating, created = rows[0]
    return {"rating": None if rating is None else bool(rating), "created_at": iso(created)}


def _scores(store: LogStore, rid: UUID) -> list[dict[str, Any]]:
    rows = store.rows(f"SELECT name, value, is_bool, created_at FROM {store.table('scores')} FINAL "
                      "WHERE request_id = {rid:UUID} ORDER BY name", {"rid": rid})
    return [{"name": name, "value": bool(value) if is_bool else value, "created_at": iso(created)}
            for name, value, is_bool, created in rows]


# --- a session ---------------------------------------------------------------------------------

def session(store: LogStore, p: Params, session_id: str) -> dict[str, Any]:
    if not session_id or len(session_id) > filters.MAX_TEXT:
        raise ParamError("session_id", f"must have 1 to {filters.MAX_TEXT} characters")
    p.finish()
    rows = store.rows(
        f"SELECT {_SUMMARY_COLS}, session_path, session_name FROM {store.table('requests')} FINAL "
        "WHERE session_id = {sid:String} ORDER BY created_at, request_id LIMIT {cap:UInt32}",
        {"sid": session_id, "cap": SESSION_MAX + 1})
    if not rows:
        raise NotFound(f"no session {session_id!r} in the log")
    truncated = len(rows) > SESSION_MAX
    rows = rows[:SESSION_MAX]
    root = _node("/", "")
    nodes = {"/": root}
    name = ""
    for row in rows:
        segments = [s for s in row[18].split("/") if s]
        node = root
        for depth in range(len(segments)):
            path = "/" + "/".join(segments[: depth + 1])
            if path not in nodes:
                nodes[path] = _node(path, segments[depth])
                node["children"].append(nodes[path])
            node = nodes[path]
        node["requests"].append(_summary(row))
        name = row[19] or name
    _totals(root)
    # chDB hands back naive datetimes that are UTC: read them as UTC whatever the server's zone.
    ends = [_utc(r[1]).timestamp() + r[8] / 1e6 for r in rows]
    started, ended = _utc(rows[0][1]), datetime.fromtimestamp(max(ends), UTC)
    return {"session_id": session_id, "name": name, "requests": len(rows), "cost_usd": root["cost_usd"],
            "started_at": iso(started), "ended_at": iso(ended),
            "duration_ms": round((ended - started).total_seconds() * 1000, 3),
            "truncated": truncated, "tree": root}


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _node(path: str, name: str) -> dict[str, Any]:
    return {"path": path, "name": name, "requests": [], "children": [], "cost_usd": 0.0, "total_requests": 0}


def _totals(node: dict[str, Any]) -> None:
    """Each node's cost and count include its subtree (iterative: paths may be deep)."""
    order, stack = [], [node]
    while stack:
        n = stack.pop()
        order.append(n)
        stack.extend(n["children"])
    for n in reversed(order):
        own_nano = sum(round(r["cost_usd"] * 1e9) for r in n["requests"] if r["cost_usd"] is not None)
        n["cost_usd"] = own_nano / 1e9 + sum(c["cost_usd"] for c in n["children"])
        n["total_requests"] = len(n["requests"]) + sum(c["total_requests"] for c in n["children"])
