"""The adapter interface: what a wire format must know to pass requests through and to translate.

A wire format is one way of speaking to an LLM API (OpenAI's chat completions, Anthropic's
Messages, Gemini's generateContent, ...). Providers are data (providers/catalog.py and config);
each names one format, and each format is one ``Adapter`` instance in its own small module.

Two things use an adapter:
1. Pass-through (``/{provider}/...``): only ``auth_line`` (the provider's credential scheme), and,
   for formats that must touch every request (request signing), ``prepare_passthrough``.
2. The unified API (``POST /v1/chat/completions`` with ``model: "provider/model"`` or a route): the
   Translate stage (stages/translate.py) hands the parsed OpenAI chat body to ``chat_request``,
   which fills in a ``Call``: the native path, body and extra headers. The answer comes back through
   ``chat_response`` (a whole JSON body), ``chat_stream`` (SSE, translated event by event) or
   ``error_body`` (any status >= 400), always as OpenAI's ``chat.completion`` /
   ``chat.completion.chunk`` / error JSON, so the client, the cache and the log see one format.

How to add a format:
- write ``providers/<format>.py`` with a subclass of ``Adapter`` (set ``name``, ``auth_header``,
  ``auth_prefix``, ``translates = True`` and the four chat methods; raise ``UnsupportedParameter``
  for an OpenAI parameter it cannot honour unless ``call.drop_params``);
- register the instance in ``providers/formats.py`` (``FORMATS``) and the name in
  ``config.WIRE_FORMATS``;
- a format that signs requests (SigV4) overrides ``upstream_auth`` (called with the final method,
  path and body of a translated call) and, for pass-through, sets ``prepares_passthrough = True``
  and implements ``prepare_passthrough``;
- the mock upstream (testing/mock_upstream.py) answers in the format's real wire shape, and
  tests/translate/ gets round trips through the official ``openai`` SDK.

Adapters are pure: bytes and dicts in, bytes out, no sockets and no clock except ``Call.created``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from fastgw.errors import BadRequest

if TYPE_CHECKING:
    from fastgw.config import ProviderConfig
    from fastgw.context import RequestContext
    from fastgw.providers.table import Provider


class UnsupportedParameter(BadRequest):
    """An OpenAI parameter the target provider has no equivalent for (400, naming the parameter)."""

    code = "unsupported_parameter"

    def __init__(self, param: str, provider: str, why: str = "") -> None:
        super().__init__(
            f"{param!r} is not supported by provider {provider!r}{': ' + why if why else ''}; remove it, "
            f"or set providers.{provider}.drop_params: true to have the gateway drop it"
        )
        self.param = param

    def body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.type, "param": self.param,
                                       "code": self.code}})


@dataclass(slots=True)
class Call:
    """One translated upstream attempt: its inputs, and what ``chat_request`` made of them.

    ``chat_response`` / ``chat_stream`` read it back, so the answer names the model the client
    asked for in OpenAI's shape and gets the same id however it arrived.
    """

    provider: str  # the provider's name, for error messages
    model: str  # the model sent upstream (the part after "provider/")
    base_path: str  # the provider's base URL path, to prefix the native endpoint with
    chat_path: str = "/v1/chat/completions"  # OpenAI-compatible providers: their chat endpoint
    drop_params: bool = False  # drop what the provider can't honour instead of a 400
    stream: bool = False
    include_usage: bool = False  # the client asked for stream_options.include_usage
    id: str = field(default_factory=lambda: "chatcmpl-" + os.urandom(12).hex())
    created: int = field(default_factory=lambda: int(time.time()))
    # Filled in by chat_request:
    path: bytes = b""  # path and query on the provider's origin
    body: bytes = b""
    headers: bytes = b""  # extra "name: value\r\n" lines the format needs (anthropic-version, ...)
    json_mode: bool = False  # response_format asked for JSON that the format emulates (Anthropic)


class StreamTranslator(Protocol):
    """Native SSE bytes in, OpenAI ``chat.completion.chunk`` SSE bytes out, as they arrive.

    ``feed`` may be given any slice of the stream (events split anywhere); it returns the
    translated events that are complete so far (possibly b""). ``finish`` ends the stream: the
    last chunks and ``data: [DONE]``. ``usage_event`` is the OpenAI usage chunk (an SSE event) when
    the client did not ask for it, kept for the log (``ctx.hidden_usage``); b"" otherwise.
    """

    usage_event: bytes

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class Adapter:
    """One wire format. The base class is the pass-through behaviour every format shares."""

    name = ""
    auth_header = b"authorization"  # lower-cased header the provider reads its key from
    auth_prefix = b"Bearer "  # written before the key in that header
    translates = False  # False: a unified request is OpenAI's body with the model rewritten
    prepares_passthrough = False  # True: prepare_passthrough runs on every pass-through request
    # True: requests are authenticated with credentials the gateway holds itself (Bedrock's SigV4
    # key pair), so credential_for chooses none and a gateway key needs no grant for the provider.
    gateway_authenticates = False

    def bind(self, config: ProviderConfig) -> tuple[Adapter, str]:
        """This format for one configured provider, and the base URL to use. Formats with
        per-provider settings (Bedrock's region and signing keys, Azure's api-version) return a
        configured copy; the others are shared as they are."""
        return self, config.base_url

    def auth_line(self, api_key: str) -> bytes:
        return self.auth_header + b": " + self.auth_prefix + api_key.encode("latin-1") + b"\r\n"

    def upstream_auth(self, call: Call, method: bytes, credential: str | None) -> bytes:
        """The credential header line(s) for a translated call; signing formats override this."""
        return self.auth_line(credential) if credential else b""

    def prepare_passthrough(self, ctx: RequestContext, provider: Provider) -> None:
        """Only called when ``prepares_passthrough``; may set ``ctx.upstream_head`` (see Dispatch)."""

    def chat_request(self, chat: dict[str, Any], call: Call) -> None:
        """Fill ``call.path``, ``call.body`` and ``call.headers`` from an OpenAI chat body."""
        raise NotImplementedError

    def chat_response(self, body: bytes, call: Call) -> bytes:
        """A 2xx native JSON answer as OpenAI's ``chat.completion`` JSON."""
        raise NotImplementedError

    def chat_stream(self, call: Call) -> StreamTranslator:
        raise NotImplementedError

    def error_body(self, status: int, body: bytes, call: Call) -> bytes:
        """A native error answer as OpenAI's error JSON (the status is kept as it came)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
