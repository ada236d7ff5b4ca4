"""Credentials inside URLs, redacted: a query parameter that names a secret, and URL userinfo.

The promise is that no credential reaches a log row, a file or an error message. Headers are
redacted by name (``requestlog.record``); URLs carry secrets too, in two places:

- the query: Gemini's ``?key=``, OAuth's ``?access_token=``, signed URLs' ``?sig=`` ... A parameter
  is a credential when its name (case-insensitive, percent-decoded) contains one of
  ``_NAME_PARTS``, or is one of ``_NAMES``. The rule is broad on purpose: redacting a harmless
  parameter loses a little of a log, missing a secret breaks the promise.
- the userinfo: ``https://user:password@host``. Everything from after ``://`` to the last ``@``
  ahead of the query is replaced, not just what a URL parser calls userinfo: a password may itself
  hold ``/`` or ``@``, and a path with an ``@`` in it losing a part in a log or an error costs little.

Each keeps the rest of the URL, which is what makes a log or an error useful. ``redact_query``
runs on every logged path, so it does one substring test before any regex: most paths have no
query, and most queries (``?alt=sse``) name no credential.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from fastgw._native import recordwire

REDACTED = "[redacted]"

# Parameter names holding any of these are credentials (access_token, X-Amz-Security-Token,
# client_secret, apikey, X-Goog-Signature, X-Amz-Credential, auth_token, password ...).
_NAME_PARTS = (b"key", b"token", b"secret", b"passw", b"signature", b"credential", b"auth")
_NAMES = frozenset({b"sig", b"pwd", b"pass"})
# The precheck: a query in which none of these occur (lower-cased) holds no credential parameter.
# Each name part and name above contains one; "%" and "+" because an encoded name (k%65y) is only
# known once decoded.
_HINTS = (b"key", b"token", b"secret", b"pass", b"sig", b"credential", b"auth", b"pwd", b"%", b"+")
_NAME_PART = re.compile(b"|".join(_NAME_PARTS))
_PARAM = re.compile(rb"([^&;=#]*)=([^&#]*)")
_REDACTED = REDACTED.encode()


def redact_query(target: bytes) -> bytes:
    """``target`` with the value of every credential parameter in its query replaced."""
    # partition (one argument, no PyArg_ParseTuple) rather than find: it runs on every logged path.
    path, mark, query = target.partition(b"?")
    if not mark:  # most paths have no query at all
        return target
    if not recordwire.contains_any(query.lower(), _HINTS):
        return target
    return path + mark + _PARAM.sub(_redact_param, query)


def redact_target(target: bytes) -> bytes:
    """A request target as a client sent it, for a log row or a log line: ``redact_query``, and,
    for a target in absolute form (``POST http://user:pw@host/...``, which the HTTP parser takes
    and routing refuses later), ``redact_url``'s userinfo rule too. Origin form, the usual one,
    costs one byte test more."""
    if target[:1] != b"/" and b"@" in target:
        return redact_url(target.decode("latin-1")).encode("latin-1")
    return redact_query(target)


def _redact_param(m: re.Match[bytes]) -> bytes:
    name = m[1]
    if b"%" in name or b"+" in name:
        name = unquote_to_bytes(name.replace(b"+", b" "))
    name = name.lower()
    if name in _NAMES or _NAME_PART.search(name):
        return m[1] + b"=" + _REDACTED
    value = m[2]
    semi = value.find(b";")
    if semi < 0:
        return m[0]
    # A value runs to the next "&" (what most servers read), so "token=a;b" loses "a;b" whole;
    # "a=1;key=x" is also read the way servers that split on ";" do, and its key goes too.
    return m[1] + b"=" + value[: semi + 1] + _PARAM.sub(_redact_param, value[semi + 1 :])


def redact_url(url: str) -> str:
    """``url`` (any text, parseable or not) with its userinfo and credential query values replaced.

    For error messages and logged header values that name a URL the client sent.
    """
    start = url.find("://")
    start = 0 if start < 0 else start + 3
    end = len(url)
    for stop in "?#":
        i = url.find(stop, start)
        if 0 <= i < end:
            end = i
    at = url.rfind("@", start, end)
    if at < 0:  # a password holding "?" or "#" ("user:pa?ss@host"): an "@" before the path's "/"
        slash = url.find("/", start)
        at = url.rfind("@", start, len(url) if slash < 0 else slash)
    if at >= 0:
        url = url[:start] + REDACTED + url[at:]
    if "?" in url:
        url = redact_query(url.encode("utf-8", "surrogatepass")).decode("utf-8", "surrogatepass")
    return url
