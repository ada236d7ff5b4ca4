"""The log record: built once per request in the worker, when its response ends or its client leaves.

The worker keeps only what it alone can know (timings, status, headers, the bodies as they passed)
and leaves everything that can wait to the exporter process: parsing usage, counting tokens,
pricing. Two things do happen here, on purpose:

- Credentials are redacted before the record exists, so no key reaches the ring, the spill file on
  disk, the exporter or a sink.
- Bodies are capped (``logging.body_max_bytes``). A long stream keeps its head and its tail rather
  than its head alone, because providers put usage at both ends (Anthropic's message_start, the
  final usage chunk of OpenAI and the message_delta of Anthropic).
"""

from __future__ import annotations

import base64
import re
import struct
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson

from fastgw._native import recordwire
from fastgw._native._pure.recordwire import header_lines
from fastgw.redact import REDACTED, redact_query, redact_target, redact_url

if TYPE_CHECKING:
    from fastgw.context import RequestContext

# Header names whose values are credentials. Values are replaced, names kept: seeing *that* a
# request carried an Authorization header is useful, its value never is.
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key",
        "helicone-auth", "cookie", "set-cookie", "x-amz-security-token",
    }
)


# The same credential names, as lines of the forwarded block (Authorization and x-api-key never
# are there: the header parser keeps them apart), matched in C rather than by a loop per header.
_CREDENTIAL_LINE = re.compile(
    rb"^(" + b"|".join(re.escape(n.encode()) for n in sorted(CREDENTIAL_HEADERS)) + rb"):[^\r\n]*", re.MULTILINE
)
# A cheap test for whether the regex is needed at all: every credential name ends in one of these
# (recordwire.contains_any: memmem in C, where five `in` tests cost about 0.9 µs a request).
_CREDENTIAL_HINTS = (b"key:", b"auth:", b"authorization:", b"cookie:", b"token:")



def redacted_lines(ctx: RequestContext) -> bytes:
    """The request's headers for the log, as ``name: value`` lines, credentials replaced."""
    h = ctx.headers
    block = h.forward
    # The substring test costs tens of ns; the regex, microseconds. Most requests carry none.
    if recordwire.contains_any(block, _CREDENTIAL_HINTS):
        block = _CREDENTIAL_LINE.sub(rb"\1: [redacted]", block)
    if h.authorization is not None:
        block += b"authorization: [redacted]\r\n"
    if h.api_key is not None:
        block += b"x-api-key: [redacted]\r\n"
    return block


# A record on the wire: three lengths, the JSON of everything but the bodies, then the two bodies
# as they are. Bodies are neither decoded nor JSON-escaped on the request path; the exporter does it.
_LENGTHS = struct.Struct("<III")


def encode_record(meta: dict[str, Any], request_body: bytes = b"", response_body: bytes = b"") -> bytes:
    head = orjson.dumps(meta)
    return b"".join((_LENGTHS.pack(len(head), len(request_body), len(response_body)), head, request_body, response_body))


def decode_record(raw: bytes) -> dict[str, Any]:
    return _decoded(raw, False)


def decode_for_row(raw: bytes) -> dict[str, Any]:
    """``decode_record``, plus the response body's own bytes under ``response_bytes`` when they are
    valid UTF-8 (the body's text then holds no replacement character), for ``Enricher.row_of``:
    usage is read from bytes, and encoding the text back would cost a copy of the body a record."""
    return _decoded(raw, True)


def _decoded(raw: bytes, keep_bytes: bool) -> dict[str, Any]:
    n_meta, n_req, n_resp = _LENGTHS.unpack_from(raw)
    start = _LENGTHS.size
    record: dict[str, Any]
    if n_meta & recordwire.BINARY:  # a request, packed by pack_record
        n_meta &= ~recordwire.BINARY
        record = recordwire.unpack_meta(raw, start, n_meta)
    else:
        record = orjson.loads(raw[start : start + n_meta])
    start += n_meta
    if n_req or n_resp:
        record["request_body"] = raw[start : start + n_req].decode("utf-8", "replace")
        response = raw[start + n_req : start + n_req + n_resp]
        text = record["response_body"] = response.decode("utf-8", "replace")
        if keep_bytes and "\ufffd" not in text:
            record["response_bytes"] = response
    if isinstance(record.get("request_headers"), str):
        record["request_headers"] = header_lines(record["request_headers"])  # a packed record's is one already
    return record


def rejected_entry(raw: bytes, worker: int) -> dict[str, Any]:
    """A record the exporter could not make a row of, as kept in the rejected file for a human.

    A JSON record is kept as its text, as it always was. A packed one is kept decoded when it
    decodes (it failed later, in enrichment), else as base64: its length words and fixed fields
    would come out of a text decode as replacement characters, unreadable and unrecoverable.
    """
    entry: dict[str, Any] = {"worker": worker}
    packed = len(raw) >= _LENGTHS.size and _LENGTHS.unpack_from(raw)[0] & recordwire.BINARY
    if not packed:
        entry["raw"] = raw.decode("utf-8", "replace")
        return entry
    try:
        entry["decoded"] = decode_record(raw)
    except Exception:
        entry["raw_base64"] = base64.b64encode(raw).decode("ascii")
    return entry


def redact_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Headers as a request sent them, for a record made without a parsed request (a request
    refused before it had a context; a manual log's ``meta`` goes through ``redacted_value``, the
    same rule for text), credentials replaced.

    A parsed request's record never holds the ``Helicone-*`` headers (they become columns, or
    steer the gateway), so these are the only records where two of them can appear, and both can
    carry a secret inside: Helicone-Fallbacks is JSON whose entries hold their own Authorization
    headers, so its value goes whole; Helicone-Target-Url keeps its URL, less userinfo and
    credential query values.
    """
    out: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        out[key] = redacted_value(key, value.decode("latin-1"))
    return out


def redacted_value(key: str, value: str) -> str:
    """One header's value as a log keeps it (``key`` lower-cased): ``redact_headers``' rule, also
    for a manual log's ``meta``, whose values arrive as text rather than bytes."""
    if key in CREDENTIAL_HEADERS or key == "helicone-fallbacks":
        return REDACTED
    if key == "helicone-target-url":
        return redact_url(value)
    return value


class BodyCapture:
    """A copy of a streamed body within a byte budget: its first half and its last half.

    Appending is O(1) and copies nothing: chunks are kept by reference. The head takes whole
    chunks until it holds half the budget, so its last chunk may run past the half; the tail
    takes every chunk after that and drops whole chunks from its front while it would still hold
    the larger half of the budget without them. The last half of the body is then the tail's bytes, led by the
    end of the head's when the tail holds less than half (one large chunk, a short stream after
    it): usage sits at the end of every provider's stream, so that end must never be lost.
    """

    __slots__ = ("limit", "head", "head_bytes", "tail", "tail_bytes", "total")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head: list[bytes] = []
        self.head_bytes = 0
        self.tail: deque[bytes] = deque()
        self.tail_bytes = 0
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        half = self.limit // 2
        if self.head_bytes < half:
            self.head.append(chunk)
            self.head_bytes += len(chunk)
            return
        self.tail.append(chunk)
        self.tail_bytes += len(chunk)
        # A front chunk goes only while the rest holds the larger half (limit - half): the body is
        # then longer than the limit, so nothing dropped is needed. Against the smaller half, an
        # odd limit lost a chunk of a body exactly that long, which reported no truncation.
        keep = self.limit - half
        while self.tail and self.tail_bytes - len(self.tail[0]) >= keep:
            self.tail_bytes -= len(self.tail.popleft())

    def value(self) -> tuple[bytes, bool]:
        """The captured bytes, and whether anything in the middle was left out."""
        head = b"".join(self.head)
        if self.total <= self.limit:
            return head + b"".join(self.tail), False
        if self.tail_bytes >= self.limit // 2:
            return capped_parts(head, b"".join(self.tail), self.limit), True
        # The tail is short: the body's last half starts inside the head's chunks.
        return capped(head + b"".join(self.tail), self.limit)


def content_type_of(headers: bytes) -> str:
    """The Content-Type in a serialised header block, for the log; "" when there is none."""
    return recordwire.header_value(headers, b"content-type")


def is_event_stream(headers: bytes) -> bool:
    return content_type_of(headers).lower().startswith("text/event-stream")


def capped(body: bytes, limit: int) -> tuple[bytes, bool]:
    """``body`` within ``limit`` bytes: its first and last halves when it is longer, and whether it was."""
    if len(body) <= limit:
        return body, False
    return capped_parts(body, body, limit), True


def capped_parts(first: bytes, last: bytes, limit: int) -> bytes:
    """The first half of ``limit`` from ``first`` and the last half from ``last``. Slicing from
    ``len - half`` rather than ``-half``: with a limit under 2, ``last[-0:]`` is all of it."""
    half = limit // 2
    return first[:half] + last[max(len(last) - half, 0):]


def pack_record(
    ctx: RequestContext,
    status: int,
    error: tuple[str, str] | None,
    response_body: bytes,
    response_truncated: bool,
    response_content_type: str,
    t_first_byte: int,
    client_left: bool,
    body_limit: int,
    omit_request: bool,
    omit_response: bool,
    worker: int,
) -> bytes:
    """The request's log record (timings in microseconds), packed for the ring: what the worker pushes.

    ``decode_record`` unpacks it into the dict the exporter turns into a row. Only the redaction
    happens in Python, and its regexes only run when a cheap substring test says a credential may
    be there.
    """
    now = time.perf_counter_ns()
    provider = ctx.provider
    request_body, request_truncated = capped(ctx.body, body_limit)
    return recordwire.pack_request(
        ctx, status, error[0] if error else "", error[1] if error else "", redact_target(ctx.target),
        (provider.origin.url + redact_query(ctx.upstream_path).decode("latin-1")) if provider is not None else "",
        redacted_lines(ctx), request_body, request_truncated, response_body, response_truncated,
        response_content_type, t_first_byte, client_left, omit_request, omit_response, worker, now,
    )
