"""From request headers to a cache directive: whether to read, whether to save, for how long.

Helicone's headers decide: ``Helicone-Cache-Enabled`` turns on both reading and saving,
``Helicone-Cache-Read`` / ``Helicone-Cache-Save`` one each. A value is on only when it is "true"
(any case); anything else, including "1" or "yes", is off, because that is what Helicone does.

Choices where Helicone's documentation is silent:

* The TTL comes from the request's ``Cache-Control``: ``s-maxage`` wins over ``max-age``; the
  first occurrence of a directive counts (RFC 9111's advice for duplicates). It is clamped to 365
  days. ``max-age=0`` (or ``s-maxage=0``) means "do not store": saving is turned off while
  reading stays as asked, so an answer stored earlier can still be served.
* Caching off (the common case) returns None after three attribute checks, without looking at
  the other cache headers: a malformed ``Helicone-Cache-Bucket-Max-Size`` is only an error on a
  request that caches.
* An empty ``Helicone-Cache-Seed`` is no seed.
* ``Helicone-Cache-Ignore-Keys`` names are turned back into the bytes the client sent (the header
  parser decoded them as latin-1), so they compare equal to the raw UTF-8 keys of the JSON body.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastgw.errors import InvalidHeader

MAX_TTL_S = 365 * 86400
MAX_BUCKET = 20

_DIGITS = frozenset("0123456789")


@dataclass(frozen=True, slots=True)
class CacheDirective:
    read: bool
    save: bool
    ttl_s: int
    bucket_max: int
    seed: str | None
    ignore_keys: tuple[bytes, ...]


def _on(value: str | None) -> bool:
    return value is not None and value.lower() == "true"


# Directives are immutable, and a client that caches sends the same cache headers again and
# again: building one costs microseconds (a frozen dataclass, Cache-Control parsing), finding it
# here a tuple hash. Errors aren't remembered; they raise every time.
_MEMO: dict[tuple[object, ...], CacheDirective | None] = {}
_MEMO_MAX = 4096


def directive_from_headers(helicone: object, cache_control: bytes | None, default_ttl_s: int) -> CacheDirective | None:
    """None when the request neither reads nor saves; raises InvalidHeader for a malformed header."""
    enabled = helicone.cache_enabled  # type: ignore[attr-defined]
    save_h = helicone.cache_save  # type: ignore[attr-defined]
    read_h = helicone.cache_read  # type: ignore[attr-defined]
    if enabled is None and save_h is None and read_h is None:
        return None
    memo_key = (
        enabled, save_h, read_h, cache_control, default_ttl_s,
        helicone.cache_bucket_max_size, helicone.cache_seed, helicone.cache_ignore_keys,  # type: ignore[attr-defined]
    )
    try:
        return _MEMO[memo_key]
    except KeyError:
        pass
    result = _build(helicone, enabled, save_h, read_h, cache_control, default_ttl_s)
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.clear()
    _MEMO[memo_key] = result
    return result


def _build(helicone: object, enabled: str | None, save_h: str | None, read_h: str | None, cache_control: bytes | None, default_ttl_s: int) -> CacheDirective | None:
    both = _on(enabled)
    read = both or _on(read_h)
    save = both or _on(save_h)
    if not (read or save):
        return None
    ttl_s = _ttl(cache_control, default_ttl_s)
    if ttl_s == 0:
        save = False
        if not read:
            return None
    seed = helicone.cache_seed  # type: ignore[attr-defined]
    return CacheDirective(
        read=read,
        save=save,
        ttl_s=ttl_s,
        bucket_max=_bucket_max(helicone.cache_bucket_max_size),  # type: ignore[attr-defined]
        seed=seed or None,
        ignore_keys=parse_ignore_keys(helicone.cache_ignore_keys),  # type: ignore[attr-defined]
    )


def _bucket_max(value: str | None) -> int:
    if value is None:
        return 1
    text = value.strip()
    # int() would also take "+5", "1_0" and non-ASCII digits; the header is plain digits only.
    if text and len(text) <= 6 and _DIGITS.issuperset(text):
        n = int(text)
        if 1 <= n <= MAX_BUCKET:
            return n
    raise InvalidHeader(f"Helicone-Cache-Bucket-Max-Size must be an integer from 1 to {MAX_BUCKET}, got {value!r}")


def parse_ignore_keys(value: str | None) -> tuple[bytes, ...]:
    if not value:
        return ()
    return tuple(part.strip().encode("latin-1") for part in value.split(",") if part.strip())


def _ttl(cache_control: bytes | None, default_ttl_s: int) -> int:
    default = min(max(int(default_ttl_s), 0), MAX_TTL_S)
    if not cache_control:
        return default
    directives = parse_cache_control(cache_control)
    for name in ("s-maxage", "max-age"):
        if name in directives:
            return _seconds(name, directives[name])
    return default


def _seconds(name: str, value: str | None) -> int:
    if value is None or not value or not _DIGITS.issuperset(value):
        raise InvalidHeader(f"Cache-Control {name} must be a whole number of seconds, got {value!r}")
    if len(value) > 12:  # past 365 days anyway, and int() refuses very long digit strings
        return MAX_TTL_S
    return min(int(value), MAX_TTL_S)


def parse_cache_control(raw: bytes) -> dict[str, str | None]:
    """Directive names (lower-cased) to values (unquoted; None for a bare name); first occurrence wins.

    Commas inside a quoted value (``no-cache="a, b"``) don't split directives. An unterminated
    quote takes the rest of the header as its value rather than failing: only ``max-age`` and
    ``s-maxage`` are ever looked at, and those then fail their own check.
    """
    text = raw.decode("latin-1")
    out: dict[str, str | None] = {}
    if '"' not in text:  # the usual shape, "max-age=60, public": nothing quoted, commas split
        for part in text.split(","):
            name, eq, value = part.partition("=")
            name = name.strip().lower()
            if name and name not in out:
                out[name] = value.strip() if eq else None
        return out
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        j = i
        while j < n and text[j] not in "=,":
            j += 1
        name = text[i:j].strip().lower()
        value: str | None = None
        if j < n and text[j] == "=":
            j += 1
            while j < n and text[j] in " \t":
                j += 1
            if j < n and text[j] == '"':
                j += 1
                chars = []
                while j < n and text[j] != '"':
                    if text[j] == "\\" and j + 1 < n:
                        j += 1
                    chars.append(text[j])
                    j += 1
                value = "".join(chars)
                while j < n and text[j] != ",":  # anything between the closing quote and the comma
                    j += 1
            else:
                k = j
                while k < n and text[k] != ",":
                    k += 1
                value = text[j:k].strip()
                j = k
        if name and name not in out:
            out[name] = value
        i = j
    return out
