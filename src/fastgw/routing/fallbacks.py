"""``Helicone-Fallbacks``: a client-chosen chain of upstream URLs, in Helicone's JSON shape.

    [{"target-url": "https://api.openai.com", "headers": {"Authorization": "Bearer ..."},
      "onCodes": [429, {"from": 500, "to": 599}], "bodyKeyOverride": {"model": "gpt-4o-mini"}}, ...]

As in Helicone's worker, the list replaces the request's own target: entry 0 is tried first, and
an answer whose status is in that entry's ``onCodes`` moves on to the next entry, except from the
last entry, whose answer is returned whatever it is. A connection error or timeout moves on too
(there is no status to match, and nothing else to return). ``headers`` set (or replace) request
headers for that entry; ``bodyKeyOverride`` is merged into the JSON body, objects key by key.
The response says which entry answered in ``Helicone-Fallback-Index`` (0 = the first entry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fastgw.errors import InvalidHeader

MAX_ENTRIES = 10


@dataclass(frozen=True, slots=True)
class FallbackEntry:
    target_url: str
    headers: tuple[tuple[str, str], ...]
    on_codes: tuple[tuple[int, int], ...]  # inclusive ranges; a single code is (code, code)
    body_override: dict[str, Any] | None

    def falls_back_on(self, status: int) -> bool:
        return any(lo <= status <= hi for lo, hi in self.on_codes)


def parse_fallbacks(raw: str) -> tuple[FallbackEntry, ...]:
    """The header's entries, or a 400 that says what is wrong with it."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidHeader("Helicone-Fallbacks must be a JSON list of fallback objects") from None
    if not isinstance(data, list) or not data:
        raise InvalidHeader("Helicone-Fallbacks must be a non-empty JSON list of fallback objects")
    if len(data) > MAX_ENTRIES:
        raise InvalidHeader(f"Helicone-Fallbacks has {len(data)} entries; at most {MAX_ENTRIES}")
    return tuple(_entry(item, i) for i, item in enumerate(data))


def _entry(item: Any, i: int) -> FallbackEntry:
    where = f"Helicone-Fallbacks[{i}]"
    if not isinstance(item, dict):
        raise InvalidHeader(f"{where} must be an object")
    url = item.get("target-url")
    if not isinstance(url, str) or not url:
        raise InvalidHeader(f'{where} needs "target-url" (a string)')
    headers = item.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise InvalidHeader(f'{where}.headers must be an object of strings')
    for name, value in headers.items():
        if not name or any(c in name for c in " \t\r\n:") or any(c in value for c in "\r\n\0") \
                or not (name + value).isascii():
            raise InvalidHeader(f"{where}.headers has an invalid header {name[:64]!r}")
    codes = item.get("onCodes", [])
    if not isinstance(codes, list):
        raise InvalidHeader(f"{where}.onCodes must be a list of status codes or {{from, to}} ranges")
    override = item.get("bodyKeyOverride")
    if override is not None and not isinstance(override, dict):
        raise InvalidHeader(f"{where}.bodyKeyOverride must be an object")
    return FallbackEntry(url, tuple(headers.items()), tuple(_code(c, where) for c in codes), override)


def _code(code: Any, where: str) -> tuple[int, int]:
    if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
        return (code, code)
    if isinstance(code, dict):
        lo, hi = code.get("from"), code.get("to")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)) and 100 <= lo <= hi <= 599:
            return (lo, hi)
    raise InvalidHeader(f"{where}.onCodes: {str(code)[:64]} is not a status code (100-599) or a {{from, to}} range")


def override_body(body: bytes, override: dict[str, Any]) -> bytes:
    """``body`` with ``override`` merged in: nested objects merge key by key, anything else replaces."""
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        raise InvalidHeader("Helicone-Fallbacks bodyKeyOverride needs a JSON object request body") from None
    if not isinstance(data, dict):
        raise InvalidHeader("Helicone-Fallbacks bodyKeyOverride needs a JSON object request body")
    return orjson.dumps(_merge(data, override))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def with_headers(raw: list[tuple[bytes, bytes]], headers: tuple[tuple[str, str], ...]) -> list[tuple[bytes, bytes]]:
    """The request's raw headers with an entry's headers set: same names (any case) replaced."""
    if not headers:
        return raw
    names = {n.lower().encode("latin-1") for n, _ in headers}
    kept = [(n, v) for n, v in raw if n.lower() not in names]
    return kept + [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
