"""The response-cache key of a request (compiled twin: cachekey.pyx; pure twin: _pure/cachekey.py).

Why a canonical form: two requests that mean the same thing must share a cache entry even when
their clients serialise them differently, so the body is hashed in a form that does not depend
on key order, whitespace or how a string is escaped. Both twins return the same bytes for every
input.

The key stream, which XXH3-128 hashes (``cache_key`` returns its 16-byte canonical digest, the
big-endian form ``xxhash.xxh3_128(stream).digest()`` gives)::

    FORMAT                                    b"fastgw.cachekey.v1\\x00": a version, changed with
                                              any change to this layout or the canonical form
    seed, provider, target, path, credential  each as its length (8 bytes, little-endian), then
                                              its bytes
    b"J" + canonical_json(body, ignore_keys)  when the body is JSON
    b"R" + body                               when it is not (ignore_keys play no part)

Every field before the body carries its length, so no two different argument lists give the same
stream (seed b"ab" + provider b"c" is not seed b"a" + provider b"bc"); the body is the rest of
the stream and needs none. The J/R tag keeps a body that is not JSON from ever sharing a stream
with a JSON one.

The credential is the raw Authorization or x-api-key value; hashing it in means one API key's
cache entries are never served to another. It never leaves the function: only the digest does,
and a 128-bit digest of a stream that mixes an API-key-sized secret with the rest of the request
gives no practical way back to the secret. XXH3 is not a cryptographic hash, though (it promises
no preimage or collision resistance), which is acceptable while keys stay inside the gateway and
its cache store: a client never sees one, so has nothing to invert or to aim a collision at. If
keys are ever exposed, pass a keyed cryptographic hash of the credential instead.

The canonical form (``canonical_json``):

* The input must be exactly one JSON value (RFC 8259; any type at the top level) in strict UTF-8,
  with JSON whitespace (SP, HTAB, LF, CR) allowed around tokens. Anything else is not JSON: an
  empty body, a byte-order mark, trailing commas, comments, NaN or Infinity, leading zeros, raw
  control bytes in strings, invalid UTF-8 (overlong forms, encoded surrogates, beyond U+10FFFF),
  a \\u escape of a surrogate that is not half of a high-low pair, or arrays and objects nested
  deeper than MAX_DEPTH (256; a value inside 256 containers is fine, 257 is not).
* No whitespace is written.
* An object is ``{``, its members as ``"key":value`` joined by ``,``, then ``}``. Members are
  sorted by the bytes of their decoded keys (UTF-8, compared bytewise, which is code point order).
  A key that occurs more than once keeps its last value, as JSON parsers do. In the top-level
  object only, members whose decoded key equals one of ``ignore_keys`` are left out (every
  occurrence); the same key deeper down is kept.
* An array is ``[``, its values in order joined by ``,``, then ``]``.
* A string is ``"``, its decoded text, ``"``, escaping only: ``"`` as ``\\"``, ``\\`` as ``\\\\``,
  U+0008, U+0009, U+000A, U+000C, U+000D as ``\\b \\t \\n \\f \\r``, the other code points below
  U+0020 as ``\\u00xx`` (lower-case hex). Everything else, ``/``, U+007F and all non-ASCII
  included, is its UTF-8 bytes. (That is what ``json.dumps(ensure_ascii=False)`` and orjson write.)
* A number is its text as written. So ``1``, ``1.0``, ``1e0`` and ``-0`` vs ``0`` are different
  bodies on purpose: making them equal would mean choosing a float format (and an integer range),
  and a client that resends a request resends the same text.
* ``true``, ``false`` and ``null`` are themselves.
"""

FORMAT: bytes  # the stream's first bytes: the key format's version
MAX_DEPTH: int  # 256: arrays and objects nested deeper make a body "not JSON"

def canonical_json(body: bytes, ignore_keys: tuple[bytes, ...]) -> bytes | None:
    """The canonical text of ``body`` with the top-level ``ignore_keys`` left out; None when
    ``body`` is not JSON. TypeError when an argument is not bytes (or ``ignore_keys`` not a tuple
    of bytes); MemoryError when scratch space cannot be had."""

def cache_key(
    seed: bytes,
    provider: bytes,
    target: bytes,
    path: bytes,
    body: bytes,
    ignore_keys: tuple[bytes, ...],
    credential: bytes,
) -> bytes:
    """The 16-byte key of a request: ``seed`` (Helicone-Cache-Seed, b"" when absent), the
    provider's name, the target origin, the request path, the body (ignoring the top-level
    Helicone-Cache-Ignore-Keys when it is JSON) and the caller's credential (the raw Authorization
    or x-api-key value). TypeError as for ``canonical_json``."""
