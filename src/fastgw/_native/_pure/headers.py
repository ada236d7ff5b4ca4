"""Pure-Python twin of ``fastgw._native.headers`` (the contract is ``headers.pyi``).

It serves traffic when the extension is not built and is the oracle the tests hold the compiled
twin to, so both must agree on every result and on every ``HeaderError`` message.

Rules the contract leaves open, applied identically by both twins:

* Header names are checked against RFC 9110's tchar set; values may hold HTAB, SP, visible ASCII
  and obs-text (0x80-0xFF), nothing else. Errors are raised in header order: for each header, its
  name, then its value, then (for Content-Length) its number.
* Content-Length must be 1+ ASCII digits after stripping and fit in a signed 64-bit integer.
* A repeated Host, Authorization, x-api-key, Content-Type, Expect or Transfer-Encoding header:
  the last one decides (``chunked`` looks at the last coding of the last Transfer-Encoding).
* ``Helicone-Property-`` with nothing after the dash is not a property: it lands in ``extra``.
* The free-text values (properties, user id, session id, path and name: what the log stores as
  text) are decoded as UTF-8 when they are valid UTF-8, else as latin-1; every other Helicone
  value is latin-1, as it came off the wire.
* A Connection header's value is a comma-separated list of names; each is stripped of spaces and
  tabs and lower-cased, and the forwarded headers of that name are left out of ``forward``.
  Dropping only touches ``forward``: a listed Content-Type is still reported in ``content_type``.

Speed: the byte checks and the lower-casing run once over all names (and once over all values)
joined together, in C inside ``bytes.translate`` / ``bytes.lower``; when that bulk check fails, a
slow sequential pass finds the first offending header so the error matches the compiled twin's.
"""
from fastgw._native.errors import HeaderError

__all__ = ["HeaderError", "HeliconeHeaders", "ParsedHeaders", "parse_headers"]

# RFC 9110 section 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
# "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TCHAR_NL = _TCHAR + b"\n"  # "\n" is the separator of the joined names
# Control bytes a value may not hold: everything below 0x20 but HTAB, and DEL.
_CTL = bytes(range(0x00, 0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"
_VALUE_OK = bytes(b for b in range(256) if b not in _CTL)
_OWS = b" \t"
_INT64_MAX = (1 << 63) - 1
_HELICONE = b"helicone-"  # 9 bytes
_PROPERTY = b"helicone-property-"  # 18 bytes

# What to do with each name the gateway knows (looked up lower-cased). Names not here are
# forwarded, unless they start with "helicone-".
_DROP = 0  # hop-by-hop: neither kept nor forwarded
_HOST = 1
_AUTHORIZATION = 2
_API_KEY = 3
_CONTENT_TYPE = 4  # kept *and* forwarded
_CONTENT_LENGTH = 5
_TRANSFER_ENCODING = 6
_EXPECT = 7
_CONNECTION = 8

_HELICONE_FIELDS = {
    "auth": "auth",
    "request-id": "request_id",
    "target-url": "target_url",
    "user-id": "user_id",
    "session-id": "session_id",
    "session-path": "session_path",
    "session-name": "session_name",
    "omit-request": "omit_request",
    "omit-response": "omit_response",
    "cache-enabled": "cache_enabled",
    "cache-save": "cache_save",
    "cache-read": "cache_read",
    "cache-bucket-max-size": "cache_bucket_max_size",
    "cache-seed": "cache_seed",
    "cache-ignore-keys": "cache_ignore_keys",
    "ratelimit-policy": "ratelimit_policy",
    "retry-enabled": "retry_enabled",
    "retry-num": "retry_num",
    "retry-factor": "retry_factor",
    "retry-min-timeout": "retry_min_timeout",
    "retry-max-timeout": "retry_max_timeout",
    "fallbacks": "fallbacks",
}

# One dict for every known name: an int action, or (for the Helicone fields) the attribute name.
_ACTIONS = {
    b"connection": _CONNECTION,
    b"keep-alive": _DROP,
    b"proxy-connection": _DROP,
    b"proxy-authenticate": _DROP,
    b"proxy-authorization": _DROP,
    b"te": _DROP,
    b"trailer": _DROP,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"upgrade": _DROP,
    b"host": _HOST,
    b"content-length": _CONTENT_LENGTH,
    b"expect": _EXPECT,
    b"authorization": _AUTHORIZATION,
    b"x-api-key": _API_KEY,
    b"content-type": _CONTENT_TYPE,
}
_ACTIONS.update({_HELICONE + suffix.encode(): attr for suffix, attr in _HELICONE_FIELDS.items()})
_ALWAYS_DROPPED = frozenset(name for name, action in _ACTIONS.items() if action != _CONTENT_TYPE)
# The fields decoded by _text, with the properties.
_TEXT_FIELDS = frozenset({"user_id", "session_id", "session_path", "session_name"})


def _text(value):
    """A free-text value: UTF-8 when it is valid UTF-8, else latin-1 (ASCII, the common case, is both)."""
    if not value.isascii():
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return value.decode("latin-1")


class HeliconeHeaders:
    """The ``Helicone-*`` request headers as strings (None when absent): the free-text ones
    (``_TEXT_FIELDS``, properties) UTF-8 when valid, the others latin-1."""

    # Absent fields read the class-level None: building one costs two dicts, not 24 stores.
    auth = request_id = target_url = user_id = None
    session_id = session_path = session_name = None
    omit_request = omit_response = None
    cache_enabled = cache_save = cache_read = cache_bucket_max_size = None
    cache_seed = cache_ignore_keys = None
    ratelimit_policy = None
    retry_enabled = retry_num = retry_factor = retry_min_timeout = retry_max_timeout = None
    fallbacks = None

    def __init__(self):
        self.properties = {}
        self.extra = {}

    def __repr__(self):
        fields = [f"{attr}={getattr(self, attr)!r}" for attr in _HELICONE_FIELDS.values() if getattr(self, attr) is not None]
        fields.append(f"properties={self.properties!r}")
        fields.append(f"extra={self.extra!r}")
        return f"HeliconeHeaders({', '.join(fields)})"


class ParsedHeaders:
    """Everything one pass over a request's headers yields (see ``headers.pyi``)."""

    __slots__ = (
        "helicone",
        "authorization",
        "api_key",
        "content_type",
        "content_length",
        "chunked",
        "expect_continue",
        "host",
        "forward",
    )

    def __init__(self, helicone, authorization, api_key, content_type, content_length, chunked, expect_continue, host, forward):
        self.helicone = helicone
        self.authorization = authorization
        self.api_key = api_key
        self.content_type = content_type
        self.content_length = content_length
        self.chunked = chunked
        self.expect_continue = expect_continue
        self.host = host
        self.forward = forward

    def __repr__(self):
        fields = ", ".join(f"{attr}={getattr(self, attr)!r}" for attr in self.__slots__)
        return f"ParsedHeaders({fields})"


def _content_length(value, previous):
    """The int of a stripped Content-Length ``value``; ``previous`` is -1 or the one seen before."""
    if not value.isdigit():  # bytes.isdigit: ASCII digits only, False for b""
        raise HeaderError(f"invalid Content-Length: {value!r}")
    length = int(value)
    if length > _INT64_MAX:
        raise HeaderError(f"invalid Content-Length: {value!r}")
    if previous >= 0 and previous != length:
        raise HeaderError(f"conflicting Content-Length values: {previous} and {length}")
    return length


def _raise_first_error(raw):
    """Slow path, taken when the bulk byte check failed: raise the error the compiled twin raises.

    Walks the headers in order so that an earlier bad Content-Length wins over a later bad byte.
    """
    content_length = -1
    for name, value in raw:
        if not name:
            raise HeaderError("empty header name")
        bad = name.translate(None, _TCHAR)
        if bad:
            raise HeaderError(f"invalid byte 0x{bad[0]:02x} in header name {name!r}")
        bad = value.translate(None, _VALUE_OK)
        if bad:
            raise HeaderError(f"invalid byte 0x{bad[0]:02x} in the value of header {name!r}")
        if name.lower() == b"content-length":
            content_length = _content_length(value.strip(_OWS), content_length)
    raise AssertionError("bulk header check failed but no header is invalid")  # pragma: no cover


def _connection_tokens(values):
    """The lower-cased names a list of Connection values lists, minus those dropped anyway."""
    tokens = set()
    for value in values:
        for token in value.lower().split(b","):
            tokens.add(token.strip(_OWS))
    tokens.discard(b"")
    return tokens - _ALWAYS_DROPPED


def parse_headers(raw):
    """Parse a request's headers as received (names in any case). See ``headers.pyi``."""
    helicone = HeliconeHeaders()
    authorization = api_key = content_type = host = None
    content_length = -1
    chunked = expect_continue = False
    if raw.__class__ is not list:
        raw = list(raw)
    if not raw:
        return ParsedHeaders(helicone, None, None, None, -1, False, False, None, b"")

    names, values = zip(*raw)
    blob = b"\n".join(names)
    lnames = blob.lower().split(b"\n")
    value_blob = b"".join(values)
    if (
        len(lnames) != len(names)  # a name held "\n"
        or b"" in lnames
        or blob.translate(None, _TCHAR_NL)
        or len(value_blob.translate(None, _CTL)) != len(value_blob)
    ):
        _raise_first_error(raw)

    parts = []  # b"name", b": ", b"value", b"\r\n", ... joined once at the end
    connection = None
    ows = _OWS
    # value.strip(ows) returns value itself when there is nothing to strip.
    for lname, value, action in zip(lnames, values, map(_ACTIONS.get, lnames)):
        if action is None:
            if lname[:9] == _HELICONE:
                if lname[:18] == _PROPERTY and len(lname) > 18:
                    helicone.properties[lname[18:].decode("latin-1")] = _text(value.strip(ows))
                else:
                    helicone.extra[lname.decode("latin-1")] = value.strip(ows).decode("latin-1")
            else:
                parts += (lname, b": ", value.strip(ows), b"\r\n")
        elif action.__class__ is str:
            value = value.strip(ows)
            setattr(helicone, action, _text(value) if action in _TEXT_FIELDS else value.decode("latin-1"))
        elif action == _CONTENT_TYPE:
            content_type = value = value.strip(ows)
            parts += (lname, b": ", value, b"\r\n")
        elif action == _AUTHORIZATION:
            authorization = value.strip(ows)
        elif action == _HOST:
            host = value.strip(ows)
        elif action == _API_KEY:
            api_key = value.strip(ows)
        elif action == _CONTENT_LENGTH:
            content_length = _content_length(value.strip(ows), content_length)
        elif action == _TRANSFER_ENCODING:
            chunked = value.rpartition(b",")[2].strip(ows).lower() == b"chunked"
        elif action == _EXPECT:
            expect_continue = value.strip(ows).lower() == b"100-continue"
        elif action == _CONNECTION:
            if connection is None:
                connection = [value]
            else:
                connection.append(value)
        # else: _DROP

    if chunked and content_length >= 0:
        raise HeaderError("both Content-Length and chunked Transfer-Encoding")

    if connection is not None:
        tokens = _connection_tokens(connection)
        if tokens:
            kept = []
            for i in range(0, len(parts), 4):
                if parts[i] not in tokens:
                    kept += parts[i : i + 4]
            parts = kept

    return ParsedHeaders(
        helicone, authorization, api_key, content_type, content_length, chunked, expect_continue, host, b"".join(parts)
    )
