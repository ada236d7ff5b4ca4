"""Gateway key text: how a key looks, and the hash that is all the store ever keeps of it.

A key is ``fgw-`` followed by 43 URL-safe characters: 32 bytes (256 bits) from the OS's CSPRNG.
The prefix lets the gateway tell its own keys from a provider's (``sk-...``) without a lookup, and
lets secret scanners find leaked ones.

Why plain SHA-256 and not a password hash (bcrypt, scrypt, argon2): those exist to slow down the
guessing of low-entropy secrets that people choose. Nobody can enumerate 2**256 random keys at any
speed, so a slow hash would buy no safety, and it would cost every request milliseconds of CPU and
make the hash unusable as a lookup key (a salted hash cannot be found by its value). A stolen store
still yields no usable key.
"""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "fgw-"
PREFIX_BYTES = PREFIX.encode()
_SECRET_BYTES = 32


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def key_hash(key: str) -> str:
    """The store's index: hex SHA-256 of the whole key text, prefix included."""
    return hashlib.sha256(key.encode("latin-1", "replace")).hexdigest()


def key_id_for(digest: str) -> str:
    """The key's public name in listings, logs and ``revoke``: derived from the hash, so it reveals
    nothing a holder of the store doesn't already have, and needs no second index to stay unique."""
    return "key_" + digest[:16]


def hint(key: str) -> str:
    """Enough of the key for a person to recognise theirs in a listing (its last 4 characters)."""
    return f"{PREFIX}...{key[-4:]}"


def bearer_key(value: bytes | str | None) -> str | None:
    """The gateway key in an ``Authorization`` / ``Helicone-Auth`` value, or None if there is none.

    ``Bearer fgw-...``, or a bare ``fgw-...`` (a client that forgot the scheme: still the gateway's
    key, never to be forwarded); anything else is a provider credential and passes as before.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        # The common no-key case: one bounded substring test. find(), not `in`: CPython 3.11's bytes
        # `in` first tries its operand as an integer, and formats and drops a TypeError (callgrind:
        # ~3,000 instructions a test, against ~700 for find's argument parsing and search).
        if value.find(PREFIX_BYTES, 0, 16) < 0:
            return None
        value = value.decode("latin-1")
    value = value.strip()
    if value.startswith(PREFIX) and " " not in value:
        return value
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(PREFIX):
        return None
    return token


def plain_key(value: bytes | None) -> str | None:
    """The gateway key in an ``x-api-key`` value (how the Anthropic SDK sends its key), or None."""
    if value is None or not value.startswith(PREFIX_BYTES):
        return None
    return value.decode("latin-1").strip()
