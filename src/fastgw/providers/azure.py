"""Azure OpenAI: OpenAI's wire format behind deployment URLs, an ``api-key`` header and an
``api-version`` query parameter.

There is no catalog entry, since every Azure resource has its own host; config declares one:
``providers: {azure: {base_url: "https://RESOURCE.openai.azure.com", format: azure,
api_version: "2024-10-21", api_key: "${AZURE_OPENAI_API_KEY}"}}``.

1. Pass-through (``/azure/openai/deployments/{deployment}/...``, what the ``AzureOpenAI`` SDK sends
   with ``azure_endpoint`` at the gateway): the path goes as it came, ``api-version`` is added when
   the client's query has none, and the credential is, in order: a gateway key's granted credential
   or the configured ``api_key`` (as ``api-key``, the client's own ``api-key`` header removed so it
   is never forwarded), else the client's ``api-key``, else the client's ``Authorization`` (an
   Entra ID token). A gateway key (``fgw-...``) is never forwarded.
2. The unified API, ``model: "azure/<deployment>"``: the body goes to the deployment's chat
   endpoint; the answer is already OpenAI's. The client's bearer credential is sent as
   ``api-key``. Streams ask for usage, and the usage chunk reaches the client only if it asked.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from fastgw.errors import Forbidden
from fastgw.keys.token import PREFIX_BYTES
from fastgw.providers import chat_shapes as S
from fastgw.providers.base import Adapter, Call
from fastgw.providers.sse_events import SSEParser

if TYPE_CHECKING:
    from fastgw.config import ProviderConfig
    from fastgw.context import RequestContext
    from fastgw.providers.table import Provider

DEFAULT_API_VERSION = "2024-10-21"  # the latest GA data-plane version when this was written
_API_KEY_LINE = re.compile(rb"(?im)^api-key:[ \t]*([^\r\n]*)\r?\n")
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error"}


class AzureAdapter(Adapter):
    name = "azure"
    auth_header = b"api-key"
    auth_prefix = b""
    translates = True  # not for the body (it is OpenAI's), for the api-key header and the URL
    prepares_passthrough = True

    def __init__(self, api_version: str = DEFAULT_API_VERSION) -> None:
        self.api_version = api_version

    def bind(self, config: ProviderConfig) -> tuple[Adapter, str]:
        return AzureAdapter(config.api_version or DEFAULT_API_VERSION), config.base_url

    def prepare_passthrough(self, ctx: RequestContext, provider: Provider) -> None:
        path = ctx.upstream_path
        raw, _, query = path.partition(b"?")
        if not re.search(rb"(?:^|&)api-version=", query):
            query = (query + b"&" if query else b"") + b"api-version=" + self.api_version.encode()
            ctx.upstream_path = raw + b"?" + query
        h = ctx.headers
        forward = h.forward
        principal = ctx.principal
        granted = principal.credentials.get(provider.name) if principal is not None else None
        own = _API_KEY_LINE.search(forward)
        if granted is not None:
            auth = self.auth_line(granted)
        elif provider.auth_line is not None:
            auth = provider.auth_line
        elif own is not None and not own.group(1).startswith(PREFIX_BYTES):
            auth = b""  # the client's api-key stays where it is in the forwarded block
        elif h.authorization is not None and not _is_gateway_key(h.authorization):
            auth = b"authorization: " + h.authorization + b"\r\n"  # an Entra ID token
        elif principal is not None:
            raise Forbidden(f"gateway key {principal.key_id} has no credential for provider {provider.name!r}")
        else:
            auth = b""
        if own is not None and (auth or own.group(1).startswith(PREFIX_BYTES)):
            forward = _API_KEY_LINE.sub(b"", forward)  # replaced, or a gateway key: never forwarded
        ctx.upstream_head = forward + auth

    def chat_request(self, chat: dict[str, Any], call: Call) -> None:
        body = {**chat, "model": call.model}
        if call.stream:
            body["stream_options"] = {**(chat.get("stream_options") or {}), "include_usage": True}
        call.path = (f"{call.base_path}/openai/deployments/{quote(call.model, safe='')}/chat/completions"
                     f"?api-version={self.api_version}").encode()
        call.body = orjson.dumps(body)
        call.headers = b"content-type: application/json\r\n"

    def chat_response(self, body: bytes, call: Call) -> bytes:
        return body  # already a chat.completion

    def chat_stream(self, call: Call) -> AzureStream:
        return AzureStream(call)

    def error_body(self, status: int, body: bytes, call: Call) -> bytes:
        """Azure's errors are OpenAI-shaped with a string ``code``; filled out to OpenAI's four keys."""
        try:
            err = orjson.loads(body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            err = None
        if not isinstance(err, dict) or not err.get("message"):
            message = f"provider answered {status}: {body[:200].decode('utf-8', 'replace')}"
            return S.error_json(message, _ERROR_TYPES.get(status, "server_error"), None)
        type_ = err.get("type") or _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        code = err.get("code")
        return S.error_json(err["message"], type_, str(code) if code is not None else None, err.get("param"))


def _is_gateway_key(authorization: bytes) -> bool:
    scheme, _, token = authorization.partition(b" ")
    return (token.strip() if scheme.lower() == b"bearer" else authorization).startswith(PREFIX_BYTES)


class AzureStream:
    """Azure's SSE is OpenAI's: events pass unchanged, except the usage chunk the gateway asked
    for on the client's behalf, which is kept for the log instead."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.parser = SSEParser()
        self.usage_event = b""

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._event(data) for _, data in self.parser.feed(chunk))

    def finish(self) -> bytes:
        return b"".join(self._event(data) for _, data in self.parser.finish())

    def _event(self, data: bytes) -> bytes:
        event = b"data: " + data + b"\n\n"
        if not self.call.include_usage and data.startswith(b"{") and b'"usage"' in data:
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                return event
            if parsed.get("usage") and not parsed.get("choices"):
                self.usage_event = event
                return b""
        return event
AZURE = AzureAdapter()
