"""Status lines and canned responses, computed once at import."""

from __future__ import annotations

import http
import time
from email.utils import formatdate

from fastgw.errors import GatewayError, Overloaded

STATUS_LINES: dict[int, bytes] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, phrase.encode())
    for code in range(100, 600)
    for phrase in [http.HTTPStatus(code).phrase if code in http.HTTPStatus._value2member_map_ else ""]
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CHUNKED_END = b"0\r\n\r\n"


class DateHeader:
    """The Date header line, refreshed by the server's 1 Hz tick rather than formatted per response."""

    line = b""

    @classmethod
    def refresh(cls) -> None:
        cls.line = b"date: " + formatdate(time.time(), usegmt=True).encode() + b"\r\n"


DateHeader.refresh()


def error_response(err: GatewayError, extra_headers: bytes, keep_alive: bool) -> bytes:
    body = err.body()
    return b"".join(
        (
            STATUS_LINES[err.status],
            b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body),
            extra_headers,
            err.headers,
            DateHeader.line,
            b"" if keep_alive else b"connection: close\r\n",
            b"\r\n",
            body,
        )
    )


OVERLOADED = error_response(Overloaded("the gateway is at its connection limit"), b"", keep_alive=False)
