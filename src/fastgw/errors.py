"""The gateway's exception tree, and the one place errors become HTTP.

    GatewayError                      500 server_error
    ├── BadRequest                    400 invalid_request_error
    │   ├── MalformedHTTP             400 (the connection is closed after it)
    │   └── InvalidHeader             400
    ├── Unauthorized                  401 invalid_api_key (no valid gateway key)
    ├── Forbidden                     403 permission_error
    ├── NotFound                      404 not_found_error
    ├── RequestTimeout                408 (the connection is closed after it)
    ├── BodyTooLarge                  413
    ├── HeadersTooLarge               431
    ├── RateLimited                   429 rate_limit_exceeded (with Retry-After)
    │   └── BudgetExceeded            429 insufficient_quota (a gateway key's or team's budget)
    ├── Overloaded                    503 (connection cap, shutting down)
    ├── LimiterUnavailable            503 (rate limits fail closed and Redis is down)
    ├── KeyStoreUnavailable           503 (gateway keys or their spend could not be read)
    └── UpstreamError                 502 upstream_error
        ├── UpstreamUnreachable       502 (connect refused, DNS, TLS)
        ├── UpstreamProtocolError     502 (the upstream spoke broken HTTP or hung up mid-response)
        └── UpstreamTimeout           504

Stages raise; they never build error responses. ``error_response`` and ``error_body`` are the only
functions that turn an exception into bytes, and ``label`` is the low-cardinality name metrics use.
Foreign exceptions are mapped at the boundary where they occur (the upstream client maps OSError,
ssl errors and timeouts), so anything that reaches the server unmapped is a bug: it becomes a
generic 500 without a traceback.
"""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code = "internal_error"
    close_connection = False
    headers = b""  # extra "name: value\r\n" lines for the error response (Retry-After, ...)

    def __init__(self, message: str = "internal gateway error", *, code: str | None = None,
                 headers: bytes | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if headers is not None:
            self.headers = headers

    @property
    def label(self) -> str:
        """A low-cardinality name for metrics and logs."""
        return self.code

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code)


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "bad_request"


class MalformedHTTP(BadRequest):
    code = "malformed_http"
    close_connection = True


class InvalidHeader(BadRequest):
    code = "invalid_header"


class Unauthorized(GatewayError):
    """No valid gateway key: OpenAI's 401 shape, which SDKs raise as AuthenticationError."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(GatewayError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class RequestTimeout(GatewayError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"
    close_connection = True


class BodyTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"
    close_connection = True


class HeadersTooLarge(GatewayError):
    status = 431
    type = "invalid_request_error"
    code = "headers_too_large"
    close_connection = True


class RateLimited(GatewayError):
    """A rate-limit policy refused the request: OpenAI's 429 shape, which SDKs retry after Retry-After."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class BudgetExceeded(RateLimited):
    """A gateway key (or its team) spent its budget for a period. Retrying before the period turns
    over cannot help, so the response tells OpenAI's SDKs not to (``x-should-retry: false``)."""

    type = "insufficient_quota"
    code = "budget_exceeded"
    headers = b"x-should-retry: false\r\n"


class LimiterUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "rate_limiter_unavailable"


class KeyStoreUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "key_store_unavailable"


class Overloaded(GatewayError):
    status = 503
    type = "server_error"
    code = "overloaded"
    close_connection = True


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"


class UpstreamProtocolError(UpstreamError):
    code = "upstream_protocol_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


def error_body(message: str, type_: str, code: str) -> bytes:
    """OpenAI's error shape, which every OpenAI-compatible SDK knows how to surface."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


def as_gateway_error(exc: BaseException) -> GatewayError:
    """Anything unmapped is a bug: hide its details from the client, keep them for the log."""
    if isinstance(exc, GatewayError):
        return exc
    return GatewayError("internal gateway error")
