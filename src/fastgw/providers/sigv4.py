"""AWS Signature Version 4, with ``hmac`` and ``hashlib`` only.

Bedrock is the one provider that authenticates each request by signing it rather than by a key in
a header, so the gateway holds the AWS credentials and signs every request it sends there; the
client never sees them. tests/providers/test_sigv4.py checks this module against AWS's published
test suite (``aws-sig-v4-test-suite``).

Path encoding, the part that is easy to get wrong: every service except S3 builds the canonical
URI by URI-encoding the path *as it is sent* once more. Bedrock model ids carry ``:``
(``...-v1:0``), sent as ``%3A``, so the canonical URI holds ``%253A``. ``wire_path`` gives the
one form the gateway sends, whatever the client wrote, so the two always agree.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None  # None: long-term keys (no X-Amz-Security-Token)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AwsCredentials | None:
        """The standard AWS variables; None when the key pair is not both set."""
        env = os.environ if env is None else env
        key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            return None
        return cls(key, secret, env.get("AWS_SESSION_TOKEN") or None)

    def __repr__(self) -> str:  # never print the secret
        return f"AwsCredentials({self.access_key_id!r}, session={self.session_token is not None})"


def region_from_env(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None


def _encode(text: str, safe: str) -> str:
    # AWS's unreserved set is A-Z a-z 0-9 - _ . ~, which is what quote() keeps besides ``safe``.
    return quote(text, safe=safe, encoding="utf-8")


def wire_path(path: str) -> str:
    """The path as the gateway sends it: each segment decoded, then percent-encoded once."""
    return "/".join(_encode(unquote(segment), "") for segment in path.split("/"))


def canonical_uri(path: str) -> str:
    """The sent path URI-encoded once more (non-S3 services), with ``/`` kept."""
    return _encode(path or "/", "/")


def canonical_query(query: str) -> str:
    """Parameters encoded, then sorted by name and value; a name without ``=`` gets an empty value."""
    if not query:
        return ""
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((_encode(unquote(name), "-_.~"), _encode(unquote(value), "-_.~")))
    pairs.sort()
    return "&".join(f"{n}={v}" for n, v in pairs)


def canonical_headers(headers: list[tuple[str, str]]) -> tuple[str, str]:
    """(the canonical header block, the signed header list) over every header given.

    Names are lower-cased and sorted; values are trimmed with inner runs of spaces collapsed;
    repeated names join their values with commas in the order they came.
    """
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        merged.setdefault(name.strip().lower(), []).append(" ".join(value.split()))
    names = sorted(merged)
    block = "".join(f"{n}:{','.join(merged[n])}\n" for n in names)
    return block, ";".join(names)


def canonical_request(method: str, path: str, query: str, headers: list[tuple[str, str]],
                      payload_hash: str) -> tuple[str, str]:
    """(the canonical request, the signed header list)."""
    block, signed = canonical_headers(headers)
    text = "\n".join((method.upper(), canonical_uri(path), canonical_query(query), block, signed, payload_hash))
    return text, signed


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join((ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()))


@functools.lru_cache(maxsize=32)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """Four chained HMACs that only change with the UTC day: kept, a third of a request's signing."""
    key = ("AWS4" + secret).encode("utf-8")
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def amz_date(now: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))


def authorization(method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes,
                  creds: AwsCredentials, region: str, service: str, date: str,
                  payload_hash: str | None = None) -> str:
    """The ``Authorization`` value for a request whose signed headers (``host`` and
    ``x-amz-date`` among them, and the token when there is one) are exactly ``headers``."""
    digest = payload_hash or hashlib.sha256(body).hexdigest()
    canonical, signed = canonical_request(method, path, query, headers, digest)
    scope = f"{date[:8]}/{region}/{service}/aws4_request"
    key = signing_key(creds.secret_access_key, date[:8], region, service)
    signature = hmac.new(key, string_to_sign(date, scope, canonical).encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{ALGORITHM} Credential={creds.access_key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"


def sign(method: str, host: str, path: str, query: str, body: bytes, creds: AwsCredentials, region: str,
         service: str, extra: tuple[tuple[str, str], ...] = (), now: float | None = None) -> list[tuple[str, str]]:
    """The headers to add to a request: ``x-amz-date``, the session token if any, and
    ``authorization``. ``extra`` are headers sent as they are and signed too (content-type)."""
    date = amz_date(now)
    signed = [("host", host), ("x-amz-date", date), *extra]
    added = [("x-amz-date", date)]
    if creds.session_token:
        signed.append(("x-amz-security-token", creds.session_token))
        added.append(("x-amz-security-token", creds.session_token))
    added.append(("authorization", authorization(method, path, query, signed, body, creds, region, service, date)))
    return added


def parse_authorization(value: str) -> dict[str, str] | None:
    """The fields of a SigV4 ``Authorization`` value (Credential, SignedHeaders, Signature)."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        return None
    fields = {}
    for part in rest.split(","):
        name, _, v = part.strip().partition("=")
        fields[name] = v
    return fields if {"Credential", "SignedHeaders", "Signature"} <= fields.keys() else None
