"""The request-log record packed for the ring (compiled twin: recordwire.pyx; pure twin, and the
byte layout: _pure/recordwire.py).

Why: the worker packs each request's record in fixed fields and length-prefixed strings instead
of a dict turned into JSON, and the exporter unpacks it into the same dict. Both twins write
byte-identical records.
"""
from typing import Any

BINARY: int  # the bit of the first length that marks a binary meta
CLIENT_LEFT: int
USAGE_INJECTED: int
OMIT_REQUEST: int
OMIT_RESPONSE: int
REQUEST_TRUNCATED: int
RESPONSE_TRUNCATED: int
HAS_KEY_ID: int
HAS_TARGET_MODEL: int
STRINGS: tuple[str, ...]  # the meta's strings, in order

def contains_any(data: bytes, needles: tuple[bytes, ...]) -> bool:
    """Whether any of ``needles`` occurs in ``data``: the redaction's cheap test, one C pass a needle."""

def top_level_model(body: bytes | str) -> str | None:
    """The string value of the top-level ``"model"`` key of a JSON object, read without parsing it:
    what ``orjson.loads(body).get("model")`` gives when that is a string, "" when it is not (no
    such key, another type, or a body that doesn't start with ``{``, as the exporter's
    ``request_json`` treats one), and None when a scan can't be sure: an escape in a top-level key
    or in the model's value, the key twice, invalid UTF-8 in the value, nesting deeper than 255,
    or a text whose brackets and strings don't close (a capped body, cut in the middle). The
    caller then parses the body.

    Only the structure is checked (strings, brackets, nothing after the last ``}``): a body that
    is otherwise not JSON (a missing comma, a bad literal) still gives the model it names, where a
    parse gives none.

    Why C: the exporter needs the requested model of every record, and parsing a request body
    with orjson to read one key cost about 2 µs a record, most of it building the messages that
    are then thrown away; the scan skips strings with memchr."""

def header_value(block: bytes, name: bytes) -> str:
    """The value of the first line of ``block`` (``name: value`` lines, CRLF or LF) whose name is
    ``name`` (given in lower case; matched without regard to ASCII case), spaces and tabs around it
    removed, as latin-1; "" when no line has that name. A line must start with the name: one
    ``x-content-type:`` line is not a ``content-type:`` line.

    Why C: the log record takes the answer's Content-Type from its header block once a request;
    lower-casing the block to search it cost 0.5 µs of the worker's time."""

def pack_request(
    ctx: Any, status: int, error_type: str, error_message: str, path: bytes, target_url: str, headers: bytes,
    request_body: bytes, request_truncated: bool, response_body: bytes, response_truncated: bool,
    content_type: str, t_first_byte: int, client_left: bool, omit_request: bool, omit_response: bool,
    worker: int, now: int,
) -> bytes:
    """The whole record for ``ctx`` (a RequestContext): lengths, binary meta, the two bodies.

    ``path``, ``target_url`` and ``headers`` come already redacted; ``now`` and ``t_first_byte``
    are perf_counter_ns readings (``t_first_byte`` 0: nothing was sent); ``omit_request`` and
    ``omit_response`` are the config's, or-ed with the request's Helicone-Omit-* headers.
    """

def unpack_meta(raw: bytes, start: int, n: int) -> dict[str, Any]:
    """The binary meta at ``raw[start:start + n]`` as the dict the JSON meta gave, after
    ``record.decode_record`` (same keys, same order, same values: request_headers as a dict).
    ValueError (UnicodeDecodeError among them) when it is not one."""
