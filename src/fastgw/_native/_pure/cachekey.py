"""Pure-Python twin of ``fastgw._native.cachekey`` (the contract, and the canonical form, are in
``cachekey.pyi``).

It serves traffic when the extension is not built and is the oracle the tests hold the compiled
twin to: both return the same bytes for every input.

Why the ``json`` module parses here: its C scanner is RFC 8259 strict in all but three ways, each
closed off below, and runs far faster than a tokenizer written in Python. The hooks keep what the
canonical form needs: numbers come back as their text (``_Number``), objects as their list of
members, duplicates included (``object_pairs_hook``). The three gaps:

* NaN, Infinity and -Infinity are accepted: ``parse_constant`` rejects them.
* A \\u escape of a lone surrogate is accepted (as a surrogate code point): encoding the result to
  UTF-8 rejects it. Every string is encoded, including those in members that are then dropped
  (duplicates, ignore keys), because the compiled twin rejects such a body while reading it.
* ``json.loads`` of bytes guesses UTF-16/32: the body is decoded as strict UTF-8 first, which also
  rejects invalid UTF-8 in strings (outside strings any non-ASCII byte is invalid JSON anyway).

Nesting is checked while emitting, over every value including dropped ones. A body nested far
beyond MAX_DEPTH may make the scanner itself raise RecursionError, which means "not JSON" too;
the twin needs MAX_DEPTH free frames of the recursion limit (of 1000 by default) to agree with
the compiled one.
"""
import json
from json.encoder import encode_basestring

import xxhash

__all__ = ["FORMAT", "MAX_DEPTH", "cache_key", "canonical_json"]

FORMAT = b"fastgw.cachekey.v1\x00"
MAX_DEPTH = 256


class _Number(str):
    """A number's text as written (the scanner hands it over instead of converting it)."""

    __slots__ = ()


class _NotJSON(Exception):
    pass


def _reject_constant(name):
    raise _NotJSON(name)


# encode_basestring is json's C string encoder (that of ensure_ascii=False): the canonical escaping.
_DECODER = json.JSONDecoder(
    parse_float=_Number, parse_int=_Number, parse_constant=_reject_constant, object_pairs_hook=tuple,
)


def canonical_json(body, ignore_keys):
    """The canonical text of ``body``, or None when it is not JSON. See ``cachekey.pyi``."""
    _check_bytes(body=body)
    return _canonical(body, _ignore_set(ignore_keys))


def cache_key(seed, provider, target, path, body, ignore_keys, credential):
    """The 16-byte XXH3-128 digest of the request's key stream. See ``cachekey.pyi``."""
    _check_bytes(seed=seed, provider=provider, target=target, path=path, body=body, credential=credential)
    canonical = _canonical(body, _ignore_set(ignore_keys))
    h = xxhash.xxh3_128(FORMAT)
    for field in (seed, provider, target, path, credential):
        h.update(len(field).to_bytes(8, "little"))
        h.update(field)
    if canonical is None:
        h.update(b"R")
        h.update(body)
    else:
        h.update(b"J")
        h.update(canonical)
    return h.digest()


def _check_bytes(**fields):
    for name, value in fields.items():
        if type(value) is not bytes:  # exactly, as the compiled twin's typed arguments
            raise TypeError(f"{name} must be bytes, not {type(value).__name__}")


def _ignore_set(ignore_keys):
    if type(ignore_keys) is not tuple:
        raise TypeError(f"ignore_keys must be a tuple, not {type(ignore_keys).__name__}")
    for key in ignore_keys:
        if not isinstance(key, bytes):
            raise TypeError(f"ignore keys must be bytes, not {type(key).__name__}")
    return frozenset(ignore_keys)


def _canonical(body, ignore):
    try:
        value = _DECODER.decode(body.decode("utf-8"))
        kept, dropped = [], []
        _emit(value, 0, kept, dropped, ignore)
        # Encoding is what rejects lone surrogates, so the dropped text is encoded too.
        "".join(dropped).encode("utf-8")
        return "".join(kept).encode("utf-8")
    except (ValueError, RecursionError, _NotJSON):  # UnicodeError and JSONDecodeError are ValueErrors
        return None


def _emit(value, depth, out, dropped, ignore=frozenset()):
    """Append value's canonical text to out, and that of any member it drops to dropped.

    depth counts the containers around value; ignore applies to value's own members (only the
    top-level call passes any).
    """
    kind = type(value)
    if kind is tuple:  # an object's (key, value) members, in input order
        depth += 1
        if depth > MAX_DEPTH:
            raise _NotJSON("too deep")
        last = {}
        for key, member in value:
            if key in last:
                _emit(last[key], depth, dropped, dropped)  # a later duplicate wins
            last[key] = member
        out.append("{")
        first = True
        for key in sorted(last):  # code point order, which is the order of the UTF-8 bytes
            if ignore and _utf8(key) in ignore:
                _emit(last[key], depth, dropped, dropped)
                continue
            if not first:
                out.append(",")
            first = False
            out.append(encode_basestring(key))
            out.append(":")
            _emit(last[key], depth, out, dropped)
        out.append("}")
    elif kind is list:
        depth += 1
        if depth > MAX_DEPTH:
            raise _NotJSON("too deep")
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _emit(item, depth, out, dropped)
        out.append("]")
    elif kind is _Number:
        out.append(value)
    elif kind is str:
        out.append(encode_basestring(value))
    elif value is None:
        out.append("null")
    else:
        out.append("true" if value else "false")


def _utf8(key):
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError:
        return None  # a lone surrogate: never an ignore key, and the body is rejected later
