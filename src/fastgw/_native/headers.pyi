"""One pass over a request's headers (compiled twin: headers.pyx; pure twin: _pure/headers.py).

Why one pass: every request needs the same four things from its headers (the gateway's own
``Helicone-*`` controls, the credentials, the body framing, and the block of headers to send
upstream), and walking the list once in C is the cheapest way to get all of them.
"""

class HeaderError(ValueError):
    """A header name or value that HTTP forbids, or a malformed framing header. Maps to 400."""

class HeliconeHeaders:
    """The ``Helicone-*`` request headers as strings. The free-text values (``user_id``, the
    session fields, the properties: what the log stores as text) are decoded as UTF-8 when they
    are valid UTF-8, else as latin-1; every other value is latin-1, as it came off the wire.

    Every Optional attribute is None when the header is absent. A header repeated is the last value.
    """
    auth: str | None  # Helicone-Auth
    request_id: str | None  # Helicone-Request-Id (not validated here: the caller checks the UUID)
    target_url: str | None  # Helicone-Target-Url
    user_id: str | None  # Helicone-User-Id
    session_id: str | None  # Helicone-Session-Id
    session_path: str | None  # Helicone-Session-Path
    session_name: str | None  # Helicone-Session-Name
    omit_request: str | None  # Helicone-Omit-Request
    omit_response: str | None  # Helicone-Omit-Response
    cache_enabled: str | None  # Helicone-Cache-Enabled
    cache_save: str | None  # Helicone-Cache-Save
    cache_read: str | None  # Helicone-Cache-Read
    cache_bucket_max_size: str | None  # Helicone-Cache-Bucket-Max-Size
    cache_seed: str | None  # Helicone-Cache-Seed
    cache_ignore_keys: str | None  # Helicone-Cache-Ignore-Keys
    ratelimit_policy: str | None  # Helicone-RateLimit-Policy
    retry_enabled: str | None  # Helicone-Retry-Enabled
    retry_num: str | None  # Helicone-Retry-Num
    retry_factor: str | None  # Helicone-Retry-Factor
    retry_min_timeout: str | None  # Helicone-Retry-Min-Timeout
    retry_max_timeout: str | None  # Helicone-Retry-Max-Timeout
    fallbacks: str | None  # Helicone-Fallbacks
    properties: dict[str, str]  # Helicone-Property-<Name>: {name lower-cased: value}
    extra: dict[str, str]  # any other Helicone-* header: {full name lower-cased: value}

class ParsedHeaders:
    helicone: HeliconeHeaders
    authorization: bytes | None  # Authorization value; None when absent
    api_key: bytes | None  # x-api-key value (Anthropic's scheme); None when absent
    content_type: bytes | None  # Content-Type value; None when absent
    content_length: int  # Content-Length as an int; -1 when absent
    chunked: bool  # Transfer-Encoding ends in "chunked"
    expect_continue: bool  # Expect: 100-continue (case-insensitive)
    host: bytes | None  # Host value; None when absent
    forward: bytes
    """The headers to send upstream, serialised as ``b"name: value\\r\\n"`` lines, names lower-cased,
    in their original order. Left out: hop-by-hop headers (connection, keep-alive, proxy-connection,
    proxy-authenticate, proxy-authorization, te, trailer, transfer-encoding, upgrade, and any name
    listed in a Connection header), every helicone-* header, and the ones the gateway writes itself:
    host, content-length, expect, authorization, x-api-key."""

def parse_headers(raw: list[tuple[bytes, bytes]]) -> ParsedHeaders:
    """Parse a request's headers as received (names in any case).

    Raises HeaderError when a name is empty or holds a byte outside RFC 9110's tchar set, when a
    value holds a control byte other than HTAB (NUL, CR, LF, DEL included), when Content-Length is
    not a non-negative decimal integer or is repeated with different values, or when both
    Content-Length and chunked Transfer-Encoding are present. Leading and trailing spaces and tabs
    in values are stripped.
    """
