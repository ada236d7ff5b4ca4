"""LogAPI stage: the gateway's own logging endpoints, answered before routing.

- ``POST /custom/v1/log``: Helicone's manual-logger body (``providerRequest``, ``providerResponse``,
  ``timing``), for apps that call a provider themselves and only report the call. It becomes a
  record like a proxied request's and travels the same ring.
- ``POST /v1/request/{id}/feedback`` with ``{"rating": bool}`` and ``POST /v1/request/{id}/score``
  with ``{"scores": {name: int | bool}}`` store against an earlier request.

Bad bodies get a 400 that names the field, and a 200 means the row will be stored: a value its
columns can't hold is refused (a status, a time), except a duration, which saturates. A manual log
is capped, redacted and omitted as a proxied request's record is. The stage exists only when
logging is on.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import SplitResult, urlsplit

import orjson

from fastgw.context import RequestContext
from fastgw.errors import BadRequest
from fastgw.requestlog.enrich import saturated_us
from fastgw.requestlog.logger import RequestLogger
from fastgw.redact import redact_url
from fastgw.requestlog.record import capped, redacted_value
from fastgw.stages.base import Handler, Response

_JSON = b"content-type: application/json\r\n"
# Any id segment: a malformed one is this endpoint's 400, never a path forwarded to a provider
# with the client's credential (a review found /v1/request/abc/feedback proxied to OpenAI).
_FEEDBACK = re.compile(rb"^/v1/request/([^/?#]+)/(feedback|score)/?$")
_PROVIDER_HOSTS = {"api.openai.com": "openai", "api.anthropic.com": "anthropic",
                   "generativelanguage.googleapis.com": "gemini"}


def is_log_endpoint(method: bytes, target: bytes) -> bool:
    """A call to the gateway's own logging endpoints: it names no model and costs nothing, so a
    gateway key's model list and budgets don't apply to it (stages/auth.py), only the key itself."""
    return method == b"POST" and (target == b"/custom/v1/log" or
                                  target.startswith(b"/v1/request/") and _FEEDBACK.match(target) is not None)


def _ok(payload: dict[str, Any]) -> Response:
    return Response(200, _JSON, body=orjson.dumps(payload))


def _field(obj: Any, name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(name) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise BadRequest(f"{where}{name} must be {_JSON_TYPES[kind]}", code="invalid_field")
    return value


_JSON_TYPES = {dict: "an object", str: "a string", int: "an integer", bool: "a boolean"}


def _json_body(ctx: RequestContext) -> dict[str, Any]:
    try:
        data = orjson.loads(ctx.body)
    except orjson.JSONDecodeError:
        raise BadRequest("the body must be JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_json")
    return data


# A time the row's created_at (DateTime64(3), up to 2299-12-31) can hold, in ms since 1970.
_MAX_MS = 10_413_792_000_000 - 1


def _ms(stamp: Any, where: str) -> int:
    seconds = _field(stamp, "seconds", int, where)
    millis = _field(stamp, "milliseconds", int, where)
    ms = seconds * 1000 + millis
    if not 0 <= ms <= _MAX_MS:
        raise BadRequest(f"{where[:-1]} must be a time between 1970 and 2299", code="invalid_field")
    return ms


def _timing(timing: dict[str, Any]) -> tuple[int, int]:
    """The start in ms since 1970 and the duration in µs, saturated at what the row's UInt32 columns
    hold (71 min 35 s): a call of two hours is logged, not refused. An end before the start is."""
    start = _ms(_field(timing, "startTime", dict, "timing."), "timing.startTime.")
    end = _ms(_field(timing, "endTime", dict, "timing."), "timing.endTime.")
    if end < start:
        raise BadRequest("timing.endTime must not be before timing.startTime", code="invalid_field")
    return start, saturated_us((end - start) * 1000)


def _status(resp: dict[str, Any]) -> int:
    status = _field(resp, "status", int, "providerResponse.")
    if not 100 <= status <= 599:  # the row's column is UInt16; anything else is no HTTP status
        raise BadRequest("providerResponse.status must be an HTTP status (100-599)", code="invalid_field")
    return status


def _split(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError:  # "http://[::1": an IPv6 host not closed, and the like
        raise BadRequest("providerRequest.url must be a URL", code="invalid_field") from None


def _meta_headers(meta: dict[str, Any]) -> dict[str, str]:
    """``providerRequest.meta`` as the row's request_headers: names lower-cased and credentials
    redacted by ``record.redacted_value`` (the rule of ``record.redact_headers``), values kept as
    the text they are (JSON text, not bytes off the wire to decode as latin-1)."""
    return {name.lower(): redacted_value(name.lower(), str(value)) for name, value in meta.items()}


class LogAPI:
    def __init__(self, next: Handler, logger: RequestLogger) -> None:
        self.next = next
        self.logger = logger

    def __call__(self, ctx: RequestContext) -> Coroutine[Any, Any, Response]:
        # Not a coroutine itself: every other request gets the next stage's coroutine as it is,
        # without a frame of this stage to enter and leave (about a microsecond a request).
        if ctx.method == b"POST":
            if ctx.target == b"/custom/v1/log":
                ctx.log_skip = True  # the call is not a request row; what it reports is
                return self._answer(self._manual_log, ctx)
            if ctx.target.startswith(b"/v1/request/"):
                m = _FEEDBACK.match(ctx.target)
                if m:
                    ctx.log_skip = True
                    return self._answer(self._feedback, ctx, m.group(1).decode("latin-1"), m.group(2).decode())
        return self.next(ctx)

    @staticmethod
    async def _answer(endpoint: Callable[..., Response], *args: Any) -> Response:
        return endpoint(*args)

    def _feedback(self, ctx: RequestContext, request_id: str, what: str) -> Response:
        try:
            request_id = str(uuid.UUID(request_id))
        except ValueError:
            raise BadRequest("the request id in the path must be a UUID", code="invalid_field") from None
        data = _json_body(ctx)
        now = time.time()
        if what == "feedback":
            rating = _field(data, "rating", bool, "")
            self.logger.log_event({"kind": "feedback", "request_id": request_id, "created_at": now, "rating": rating})
            return _ok({"request_id": request_id, "rating": rating})
        scores = _field(data, "scores", dict, "")
        if not scores:
            raise BadRequest("scores must name at least one score", code="invalid_field")
        rows = []
        for name, value in scores.items():
            if not isinstance(value, (int, bool)) or not name:
                raise BadRequest(f"scores.{name} must be an integer or a boolean", code="invalid_field")
            rows.append({"kind": "score", "request_id": request_id, "name": name, "value": float(value),
                         "is_bool": isinstance(value, bool), "created_at": now})
        for row in rows:
            self.logger.log_event(row)
        return _ok({"request_id": request_id, "scores": len(rows)})

    def _manual_log(self, ctx: RequestContext) -> Response:
        data = _json_body(ctx)
        req = _field(data, "providerRequest", dict, "")
        resp = _field(data, "providerResponse", dict, "")
        timing = _field(data, "timing", dict, "")
        url = _field(req, "url", str, "providerRequest.")
        request_json = _field(req, "json", dict, "providerRequest.")
        status = _status(resp)
        if isinstance(resp.get("json"), (dict, list)):
            response = orjson.dumps(resp["json"])
        elif isinstance(resp.get("textBody"), str):
            response = resp["textBody"].encode()
        else:
            raise BadRequest("providerResponse.json must be an object (or providerResponse.textBody a string)",
                             code="invalid_field")
        start, duration_us = _timing(timing)
        parts = _split(url)
        provider = _PROVIDER_HOSTS.get(parts.hostname or "", "custom")
        meta = req.get("meta") if isinstance(req.get("meta"), dict) else {}
        # Capped as a proxied request's bodies are (record.capped): head and tail, and a flag. A cut
        # inside a character decodes to U+FFFD, as a proxied body's does in the exporter.
        request_body, request_truncated = capped(orjson.dumps(request_json), self.logger.body_limit)
        response_body, response_truncated = capped(response, self.logger.body_limit)
        h = ctx.headers.helicone
        self.logger.log_event({
            "kind": "request", "request_id": ctx.request_id, "created_at_ms": start,
            "total_us": duration_us, "upstream_us": duration_us,
            # redact_url on the path too: "https:u:pw@host/x" has no netloc, its password is in the path
            "method": "POST", "path": redact_url(parts.path or "/"), "provider": provider,
            "format": "anthropic" if provider == "anthropic" else "gemini" if provider == "gemini" else "openai",
            "target_url": redact_url(url), "status": status, "user_id": h.user_id or "",
            "properties": h.properties,
            "session_id": h.session_id or "", "session_path": h.session_path or "", "session_name": h.session_name or "",
            "request_body": request_body.decode("utf-8", "replace"), "request_truncated": request_truncated,
            "response_body": response_body.decode("utf-8", "replace"), "response_truncated": response_truncated,
            "response_content_type": "text/event-stream" if response_body.startswith((b"data:", b"event:")) else "application/json",
            "request_headers": _meta_headers(meta),
            # As a proxied request's (record.pack_record): the config's omission, or the header's.
            "omit_request": self.logger.omit_request or (h.omit_request or "").lower() == "true",
            "omit_response": self.logger.omit_response or (h.omit_response or "").lower() == "true",
            "worker": self.logger.worker,
            **({"key_id": ctx.principal.key_id} if ctx.principal is not None else {}),
        })
        return _ok({"id": ctx.request_id})
