"""LogAPI stage: the gateway's own logging endpoints, answered before routing.

- ``POST /custom/v1/log``: Helicone's manual-logger body (``providerRequest``, ``providerResponse``,
  ``timing``), for apps that call a provider themselves and only report the call. It becomes a
  record like a proxied request's and travels the same ring.
- ``POST /v1/request/{id}/feedback`` with ``{"rating": bool}`` and ``POST /v1/request/{id}/score``
  with ``{"scores": {name: int | bool}}`` store against an earlier request.

Bad bodies get a 400 that names the field. The stage exists only when logging is on.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import orjson

from fastgw.context import RequestContext
from fastgw.errors import BadRequest
from fastgw.requestlog.logger import RequestLogger
from fastgw.requestlog.record import redact_headers
from fastgw.stages.base import Handler, Response

_JSON = b"content-type: application/json\r\n"
_FEEDBACK = re.compile(rb"^/v1/request/([0-9a-fA-F-]{36})/(feedback|score)/?$")
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


def _ms(stamp: Any, where: str) -> int:
    seconds = _field(stamp, "seconds", int, where)
    millis = _field(stamp, "milliseconds", int, where)
    return seconds * 1000 + millis


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
                    return self._answer(self._feedback, ctx, m.group(1).decode(), m.group(2).decode())
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
        status = _field(resp, "status", int, "providerResponse.")
        if isinstance(resp.get("json"), (dict, list)):
            response_body = orjson.dumps(resp["json"]).decode()
        elif isinstance(resp.get("textBody"), str):
            response_body = resp["textBody"]
        else:
            raise BadRequest("providerResponse.json must be an object (or providerResponse.textBody a string)",
                             code="invalid_field")
        start = _ms(_field(timing, "startTime", dict, "timing."), "timing.startTime.")
        end = _ms(_field(timing, "endTime", dict, "timing."), "timing.endTime.")
        parts = urlsplit(url)
        provider = _PROVIDER_HOSTS.get(parts.hostname or "", "custom")
        meta = req.get("meta") if isinstance(req.get("meta"), dict) else {}
        h = ctx.headers.helicone
        self.logger.log_event({
            "kind": "request", "request_id": ctx.request_id, "created_at_ms": start,
            "total_us": max(0, end - start) * 1000, "upstream_us": max(0, end - start) * 1000,
            "method": "POST", "path": parts.path or "/", "provider": provider,
            "format": "anthropic" if provider == "anthropic" else "gemini" if provider == "gemini" else "openai",
            "target_url": url, "status": status, "user_id": h.user_id or "", "properties": h.properties,
            "session_id": h.session_id or "", "session_path": h.session_path or "", "session_name": h.session_name or "",
            "request_body": orjson.dumps(request_json).decode(), "response_body": response_body,
            "response_content_type": "text/event-stream" if response_body.startswith(("data:", "event:")) else "application/json",
            "request_headers": redact_headers([(str(k).encode(), str(v).encode()) for k, v in meta.items()]),
            "omit_request": (h.omit_request or "").lower() == "true",
            "omit_response": (h.omit_response or "").lower() == "true",
            "worker": self.logger.worker,
            **({"key_id": ctx.principal.key_id} if ctx.principal is not None else {}),
        })
        return _ok({"id": ctx.request_id})
