"""Query-string parameters of the admin API → validated values and a parameterised WHERE clause.

Everything a client sends arrives here first. Values never reach SQL as text: each becomes a
server-side bound parameter (``{f_model:Array(String)}``), and the only SQL this module writes is
fixed fragments chosen from the allow-lists below. Anything unexpected (an unknown parameter, a
date that does not parse, a number out of range, a repeated single-valued parameter) is a
``ParamError``: a 400 in OpenAI's error shape whose ``param`` names the culprit, which is also
what the OpenAPI file promises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from fastgw.errors import BadRequest

MAX_RANGE = timedelta(days=400)
DEFAULT_SINCE = timedelta(hours=24)
MAX_VALUES = 50  # values of one repeated filter
MAX_TEXT = 256
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

_DURATION = re.compile(r"^(\d{1,6})(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_STATUS = re.compile(r"^([1-5][0-9][0-9]|[1-5]xx|error|0)$")

# The model a row is about: the one served, else the one asked for (a refusal serves none).
MODEL_EXPR = "if(model_served != '', model_served, model_requested)"

# Filters that are lists of exact strings: parameter → column (or fixed expression).
_STRING_FILTERS = {
    "model": MODEL_EXPR,
    "provider": "provider",
    "user": "user_id",
    "key": "key_id",
    "session": "session_id",
}
FILTER_PARAMS = frozenset({*_STRING_FILTERS, "property", "status", "cache"})
RANGE_PARAMS = frozenset({"since", "until"})


class ParamError(BadRequest):
    """A query parameter the API cannot accept; ``param`` names it in the error body."""

    code = "invalid_parameter"

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param

    def body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.type,
                                       "param": self.param, "code": self.code}})


@dataclass(frozen=True, slots=True)
class Where:
    """A WHERE clause of fixed fragments and the values bound to its placeholders."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


class Params:
    """One request's query string, consumed parameter by parameter.

    ``finish`` rejects whatever nobody asked for, so a misspelt filter (``modle=x``) is a 400
    rather than a silently unfiltered answer.
    """

    def __init__(self, raw: dict[str, list[str]], now: datetime | None = None) -> None:
        self.raw = raw
        self.now = now or datetime.now(UTC)
        self.used: set[str] = set()

    def many(self, name: str, max_items: int = MAX_VALUES, max_len: int = MAX_TEXT) -> list[str]:
        self.used.add(name)
        values = self.raw.get(name, [])
        if len(values) > max_items:
            raise ParamError(name, f"at most {max_items} values")
        for v in values:
            if not v or len(v) > max_len:
                raise ParamError(name, f"each value must have 1 to {max_len} characters")
            if "\x00" in v:
                raise ParamError(name, "contains a NUL character")
        return values

    def one(self, name: str, max_len: int = MAX_TEXT) -> str | None:
        values = self.many(name, max_items=1, max_len=max_len)
        return values[0] if values else None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        text = self.one(name, max_len=12)
        if text is None:
            return default
        if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:  # not "²"
            raise ParamError(name, f"must be an integer from {low} to {high}")
        return int(text)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        text = self.one(name, max_len=32)
        if text is None:
            return default
        if text not in choices:
            raise ParamError(name, f"must be one of {', '.join(choices)}")
        return text

    def finish(self) -> None:
        for name in sorted(set(self.raw) - self.used):
            raise ParamError(name, "unknown parameter")


# --- time --------------------------------------------------------------------------------------

def parse_duration(text: str, param: str) -> timedelta:
    m = _DURATION.match(text)
    if m is None:
        raise ParamError(param, "expected a duration such as 90s, 15m, 1h, 7d or 2w")
    seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if seconds > MAX_RANGE.total_seconds() * 30:
        raise ParamError(param, "duration too long")
    return timedelta(seconds=seconds)


def parse_time(text: str, param: str, now: datetime) -> datetime:
    """ISO-8601 (no zone means UTC) or a duration back from ``now``."""
    if _DURATION.match(text):
        moment = now - parse_duration(text, param)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ParamError(param, "expected an ISO-8601 time (2026-01-31T12:00:00Z) or a duration (1h)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # year 1 or 9999 with an offset that leaves datetime's range
            raise ParamError(param, "must be between 2000 and 2100") from None
    if not EARLIEST <= moment <= LATEST:
        raise ParamError(param, "must be between 2000 and 2100")
    return moment


@dataclass(frozen=True, slots=True)
class TimeRange:
    since: datetime
    until: datetime

    @property
    def seconds(self) -> float:
        return (self.until - self.since).total_seconds()

    def as_json(self) -> dict[str, str]:
        return {"since": iso(self.since), "until": iso(self.until)}


def time_range(p: Params) -> TimeRange:
    since_text, until_text = p.one("since", 64), p.one("until", 64)
    until = parse_time(until_text, "until", p.now) if until_text else p.now
    since = parse_time(since_text, "since", p.now) if since_text else until - DEFAULT_SINCE
    if since >= until:
        raise ParamError("since", "must be before until")
    if until - since > MAX_RANGE:
        raise ParamError("since", f"the range may span at most {MAX_RANGE.days} days")
    return TimeRange(since, until)


def iso(moment: datetime) -> str:
    """UTC, millisecond precision, with a Z: what the API returns everywhere."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- filters -----------------------------------------------------------------------------------

def where(p: Params, tr: TimeRange) -> Where:
    """The time range and every filter parameter, as one clause over ``requests``."""
    parts = ["created_at >= {f_since:DateTime64(3, 'UTC')}", "created_at < {f_until:DateTime64(3, 'UTC')}"]
    params: dict[str, Any] = {"f_since": tr.since, "f_until": tr.until}
    for name, expr in _STRING_FILTERS.items():
        values = p.many(name)
        if values:
            parts.append(f"{expr} IN {{f_{name}:Array(String)}}")
            params[f"f_{name}"] = values
    _properties(p, parts, params)
    _statuses(p, parts, params)
    caches = p.many("cache", max_items=5, max_len=8)
    if caches:
        if any(c not in ("hit", "miss", "bypass", "none") for c in caches):
            raise ParamError("cache", "must be hit, miss, bypass or none")
        params["f_cache"] = ["" if c == "none" else c for c in caches]
        parts.append("cache_status IN {f_cache:Array(String)}")
    return Where(" AND ".join(parts), params)


def _properties(p: Params, parts: list[str], params: dict[str, Any]) -> None:
    for i, pair in enumerate(p.many("property", max_items=20, max_len=512)):
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ParamError("property", "expected name=value")
        # Exact names: headers arrive lower-cased, rows from /custom/v1/log keep their spelling.
        params[f"f_pk{i}"], params[f"f_pv{i}"] = name, value
        parts.append(f"mapContains(properties, {{f_pk{i}:String}}) AND properties[{{f_pk{i}:String}}] = {{f_pv{i}:String}}")


def _statuses(p: Params, parts: list[str], params: dict[str, Any]) -> None:
    statuses = p.many("status", max_items=20, max_len=5)
    if not statuses:
        return
    codes, classes, any_error = [], [], False
    for s in statuses:
        if not _STATUS.match(s):
            raise ParamError("status", "expected a status code (429), a class (4xx) or error")
        if s == "error":
            any_error = True
        elif s.endswith("xx"):
            classes.append(int(s[0]))
        else:
            codes.append(int(s))
    ors = []
    if codes:
        ors.append("status IN {f_status:Array(UInt16)}")
        params["f_status"] = codes
    if classes:
        ors.append("intDiv(status, 100) IN {f_status_class:Array(UInt8)}")
        params["f_status_class"] = classes
    if any_error:
        ors.append("status >= 400")
    parts.append("(" + " OR ".join(ors) + ")")
