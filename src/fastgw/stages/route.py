"""Route stage: which provider, and which path on it, from the request's path or Helicone-Target-Url.

There are three cases, checked in this order:
1. ``Helicone-Target-Url`` names the upstream; it must match ``targets.allow`` or the request gets
   403, so the gateway is never an open proxy. The request's whole path is appended to it.
2. The first path segment names a provider (``/anthropic/v1/messages``): the rest of the path is
   appended to that provider's base URL.
3. The path starts with ``/v1``: the default provider, with the whole path appended; except the
   unified API, ``POST /v1/chat/completions`` whose model is ``"<provider>/<model>"`` naming a
   known provider (``resolve_unified``): that provider, translated (stages/translate.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

import orjson

from fastgw._native import recordwire
from fastgw.config import Config
from fastgw.context import RequestContext
from fastgw.errors import BadRequest, Forbidden, NotFound
from fastgw.providers.table import Origin, Provider, parse_base_url, target_provider
from fastgw.redact import redact_query, redact_url
from fastgw.stages.base import Handler, Response

# A "." or ".." path segment, raw or percent-encoded: an upstream that normalises it would serve a
# path other than the one we checked, so such paths are refused rather than normalised here.
_DOT_SEGMENT = re.compile(rb"(?:^|/)(?:\.|%2e){1,2}(?=/|\?|#|$)", re.IGNORECASE)
# A path holding none of these bytes has no dot segment and no backslash: nothing to check further.
_PLAIN_PATH_BREAKERS = (b".", b"%", b"\\")
UNIFIED_PATH = b"/v1/chat/completions"
# At a "model" key with a string value; group 1: the value's first segment when it has a "/".
_MODEL_VALUE = re.compile(rb'"model"\s*:\s*"(?:([A-Za-z0-9_-]++)/)?')  # possessive: no backtracking


def model_key(body: bytes) -> re.Match[bytes] | None:
    """The first ``"model": "..."`` in the body, looked for where SDKs write it before anywhere
    else: the start (JavaScript SDKs), then the end (the Python SDK writes ``messages`` first), so
    that pass-through rarely scans a long body. A "model" key whose value is not a string (a tool
    schema's property) is skipped."""
    key = b'"model"'
    for at in (body.find(key, 0, 256), body.rfind(key, max(0, len(body) - 512))):
        m = _MODEL_VALUE.match(body, at) if at >= 0 else None
        if m is not None:
            return m
    at = body.find(key)
    while at >= 0:
        m = _MODEL_VALUE.match(body, at)
        if m is not None:
            return m
        at = body.find(key, at + 7)
    return None


def resolve_unified(ctx: RequestContext, providers: dict[bytes, Provider]) -> Provider | None:
    """The unified API: which provider a ``POST /v1/chat/completions`` body names, or None.

    A model ``"anthropic/claude-sonnet-4-5"`` whose first segment is a provider's name sets
    ``ctx.unified`` (the parsed body), ``ctx.model_override`` (the rest, slashes kept:
    ``"openrouter/meta-llama/llama-3-8b"`` asks OpenRouter for ``meta-llama/llama-3-8b``) and
    ``ctx.upstream_path`` (the provider's chat endpoint; Translate rewrites it per attempt), and
    returns the provider. Anything else is None and stays plain pass-through to the default
    provider. The body is parsed only when the raw scan (``model_key``) finds such a prefix, and the
    parsed top-level ``model`` has the last word; a body whose first string-valued "model" found is
    a nested one without a provider prefix is taken as pass-through. Routes (``routes:``) are
    resolved by the Router, which sets ``ctx.unified`` itself; provider prefixes are resolved here
    first, so they win over a route of the same name.
    """
    m = model_key(ctx.body)
    prefix = m.group(1) if m is not None else None
    provider = providers.get(prefix) if prefix is not None else None
    if provider is None:
        return None
    try:
        chat = orjson.loads(ctx.body)
    except orjson.JSONDecodeError:
        return None  # the default provider answers malformed JSON itself
    model = chat.get("model") if isinstance(chat, dict) else None
    if not isinstance(model, str) or not model.startswith(prefix.decode() + "/"):  # type: ignore[union-attr]
        return None  # the scan found a "model" that is not the top-level key
    ctx.unified = chat
    ctx.model_override = model.split("/", 1)[1]
    ctx.upstream_path = (provider.base_path + provider.chat_path).encode()
    return provider


def origin_form(method: bytes, target: bytes) -> bytes:
    """The request target as a path (and query), or 400.

    Absolute-form (``GET http://host/path``) is accepted, as RFC 9112 requires, and reduced to its
    path: forwarding it as is would let the upstream route by a host we never checked. CONNECT,
    authority-form and asterisk-form have no business at a gateway.
    """
    if method == b"CONNECT":
        raise BadRequest("CONNECT is not supported")
    # Not `in`: CPython 3.11's bytes `in` first tries its operand as an integer and formats a
    # TypeError it then drops (callgrind: ~3,000 instructions a test). Not three find()s either:
    # each parses its arguments through PyArg_ParseTuple (~670 instructions with the search, 225 ns
    # for the three against 40 for one contains_any).
    if target[:1] == b"/" and not recordwire.contains_any(target, _PLAIN_PATH_BREAKERS):
        return target  # the common case: a plain path can hold no dot segment
    if target[:1] != b"/":
        lower = target[:8].lower()
        if not (lower.startswith(b"http://") or lower.startswith(b"https://")):
            raise BadRequest("the request target must be a path")
        slash = target.find(b"/", target.find(b"//") + 2)
        query = target.find(b"?")
        if slash < 0 or (0 <= query < slash):
            target = b"/" + (target[query:] if query >= 0 else b"")
        else:
            target = target[slash:]
    if target.find(b"\\") >= 0 or _DOT_SEGMENT.search(target.split(b"?", 1)[0]):
        raise BadRequest("dot segments and backslashes are not allowed in the request path")
    return target


class TargetAllowlist:
    """Which upstream URLs ``Helicone-Target-Url`` may name, compared by parsed parts, never as text.

    An entry is ``scheme://host[:port][/path]``: the host may start with ``*.`` (any subdomain, not
    the bare domain), the port may be ``*`` (any), and the path is a prefix on a segment boundary.
    Text patterns would let ``*`` swallow a ``/`` or an ``@``, which is how open proxies happen.
    """

    def __init__(self, allow: tuple[str, ...]) -> None:
        self.entries = [self._parse_entry(a) for a in allow]

    @staticmethod
    def _parse_entry(entry: str) -> tuple[str, str, int | None, str]:
        scheme, _, rest = entry.partition("://")
        authority, slash, path = rest.partition("/")
        host, _, port = authority.rpartition(":") if authority.count(":") == 1 else (authority, "", "")
        default = 443 if scheme == "https" else 80
        port_num = None if port == "*" else int(port) if port else default
        return scheme.lower(), host.lower(), port_num, (slash + path).rstrip("/")

    def allows(self, origin: Origin, path: str) -> bool:
        if "\\" in path or _DOT_SEGMENT.search(path.encode("latin-1", "replace")):
            return False
        for scheme, host, port, prefix in self.entries:
            if scheme != origin.scheme or (port is not None and port != origin.port):
                continue
            if host.startswith("*."):
                if not origin.host.endswith(host[1:]):
                    continue
            elif host != origin.host:
                continue
            if not prefix or path == prefix or path.startswith(prefix + "/"):
                return True
        return False

    def provider_for(self, url: str, what: str, providers: Iterable[Provider]) -> Provider:
        """A client-named target URL (``what`` names where it came from, for the error) as a
        provider (``providers.table.target_provider``), or 403. Anything not provably on the list is
        refused alike: unparseable, with user info, or unlisted; the message never shows a secret."""
        try:
            if "@" in urlsplit(url).netloc:
                raise ValueError("user info in a target URL")
            origin, base_path = parse_base_url(url)
        except ValueError:
            raise Forbidden(f"{what} {redact_url(url)[:200]!r} is not a plain http(s) URL in targets.allow") from None
        if not self.allows(origin, base_path):
            raise Forbidden(f"{what} {redact_url(url)[:200]!r} is not in targets.allow")
        return target_provider(origin, base_path, providers)


class Route:
    def __init__(self, next: Handler, config: Config, providers: dict[str, Provider]) -> None:
        self.next = next
        self.providers = {name.encode(): p for name, p in providers.items()}
        self.default = providers[config.default_provider]
        self.allowlist = TargetAllowlist(config.targets.allow)
        self._targets: dict[str, Provider] = {}  # allowed target URLs seen, resolved once each

    async def __call__(self, ctx: RequestContext) -> Response:
        target_url = ctx.headers.helicone.target_url
        path = ctx.target = origin_form(ctx.method, ctx.target)
        if target_url is not None:
            provider = self._target_provider(target_url)
            ctx.upstream_path = provider.base_path.encode() + path
        else:
            end = path.find(b"/", 1)
            segment = path[1:end] if end > 0 else path[1:].split(b"?", 1)[0]
            provider = self.providers.get(segment)  # type: ignore[assignment]
            if provider is not None:
                rest = path[end:] if end > 0 else b"/" + path[1 + len(segment):].lstrip(b"/")
                ctx.upstream_path = provider.base_path.encode() + rest
            elif segment == b"v1":
                provider = self.default
                ctx.upstream_path = provider.base_path.encode() + path
                if path == UNIFIED_PATH and ctx.method == b"POST":
                    provider = resolve_unified(ctx, self.providers) or provider
            else:
                raise NotFound(
                    f"no route for {redact_query(path)[:200].decode('latin-1')}: use /v1/..., /<provider>/..., "
                    "or Helicone-Target-Url"
                )
        ctx.provider = provider
        return await self.next(ctx)

    def _target_provider(self, url: str) -> Provider:
        provider = self._targets.get(url)
        if provider is not None:
            return provider
        provider = self.allowlist.provider_for(url, "Helicone-Target-Url", self.providers.values())
        if len(self._targets) < 1024:
            self._targets[url] = provider
        return provider
