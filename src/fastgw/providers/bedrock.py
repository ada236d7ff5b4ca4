"""AWS Bedrock: pass-through re-signed with the gateway's AWS credentials, and the unified API
translated to the Converse API (``POST /model/{modelId}/converse`` and ``/converse-stream``).

Authentication is the difference from every other provider: Bedrock wants each request signed
(SigV4, providers/sigv4.py) with the key pair of an AWS principal, so the gateway holds that key
pair (config or the standard ``AWS_*`` variables) and signs what it sends. Whatever credential
headers a client sent (an SDK pointed at the gateway signs with whatever it has) are dropped, so
the client never needs AWS keys. A configured ``api_key`` (a Bedrock API key) is sent as a bearer
token instead when no key pair is set.

Choices where Converse and OpenAI's chat completions differ:
- Images must be bytes (base64 in the JSON body): ``data:`` URLs carry over, http(s) URLs are a 400
  (Bedrock does not fetch URLs).
- ``tool_choice: "none"`` has no Converse equivalent: a 400 unless ``drop_params`` (then the
  tools are sent without a choice). ``response_format`` and ``n > 1`` are refused the same way.
- Usage: ``inputTokens`` leaves out cache reads and writes, OpenAI's ``prompt_tokens`` includes
  them, so prompt_tokens = input + cacheRead + cacheWrite, with ``cached_tokens`` = cacheRead.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from fastgw.errors import GatewayError
from fastgw.providers import chat_shapes as S
from fastgw.providers import sigv4
from fastgw.providers.base import Adapter, Call, UnsupportedParameter
from fastgw.providers.bedrock_stream import (
    ERROR_TYPES,
    FINISH,
    ConverseStream,
    to_usage,
)

if TYPE_CHECKING:
    from fastgw.config import ProviderConfig
    from fastgw.context import RequestContext
    from fastgw.providers.table import Provider

SERVICE = "bedrock"  # the SigV4 signing name of bedrock-runtime
DEFAULT_REGION = "us-east-1"
SUPPORTED = frozenset({"max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "tools",
                       "tool_choice", "parallel_tool_calls", "n"})
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}
# Client headers that belong to the client's own signature, replaced by ours.
_CLIENT_SIGNING = re.compile(rb"(?im)^(?:x-amz-date|x-amz-security-token|x-amz-content-sha256):[^\n]*\n")


class MissingAwsCredentials(GatewayError):
    status = 500
    code = "provider_credentials_missing"


@dataclasses.dataclass(frozen=True, slots=True)
class _Signing:
    region: str
    host: str  # the Host header the request is sent with, which the signature covers
    creds: sigv4.AwsCredentials | None  # None: no key pair (a bearer api_key, or an error)
    api_key: str | None  # a Bedrock API key from config, used only when there is no key pair


class BedrockAdapter(Adapter):
    name = "bedrock"
    auth_header = b"authorization"
    auth_prefix = b"Bearer "  # Bedrock API keys; key pairs sign instead
    translates = True
    prepares_passthrough = True
    gateway_authenticates = True

    def __init__(self, signing: _Signing | None = None) -> None:
        self.signing = signing  # None: the unbound registry entry, never used for a request

    def bind(self, config: ProviderConfig) -> tuple[Adapter, str]:
        # table imports the formats, so this import waits until a provider is built
        from fastgw.providers.table import parse_base_url

        region = config.region or sigv4.region_from_env() or DEFAULT_REGION
        base_url = config.base_url.replace("{region}", region)
        if config.aws_access_key_id and config.aws_secret_access_key:
            creds: sigv4.AwsCredentials | None = sigv4.AwsCredentials(
                config.aws_access_key_id, config.aws_secret_access_key, config.aws_session_token or None)
        else:
            creds = sigv4.AwsCredentials.from_env()
        origin, _ = parse_base_url(base_url)
        signing = _Signing(region, origin.host_header.decode("ascii"), creds, config.api_key)
        return BedrockAdapter(signing), base_url

    # -- authentication

    def signed_lines(self, method: bytes, path: bytes, body: bytes, content_type: bytes | None) -> bytes:
        """The header lines that authenticate one request to ``path`` (already in wire form)."""
        signing = self.signing
        assert signing is not None, "bind() runs at start"
        if signing.creds is None:
            if signing.api_key:
                return self.auth_line(signing.api_key)
            raise MissingAwsCredentials(
                "no AWS credentials for Bedrock: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
                "AWS_SESSION_TOKEN for temporary ones), or providers.<name>.aws_access_key_id / aws_secret_access_key")
        raw_path, _, query = path.decode("latin-1").partition("?")
        extra = (("content-type", content_type.decode("latin-1")),) if content_type else ()
        added = sigv4.sign(method.decode("ascii"), signing.host, raw_path, query, body, signing.creds,
                           signing.region, SERVICE, extra)
        return b"".join(f"{n}: {v}\r\n".encode("latin-1") for n, v in added)

    def upstream_auth(self, call: Call, method: bytes, credential: str | None) -> bytes:
        # A client credential is never a reason to skip signing: only a configured key counts.
        return self.signed_lines(method, call.path, call.body, b"application/json")

    def prepare_passthrough(self, ctx: RequestContext, provider: Provider) -> None:
        """Re-sign the client's request: the path in the one encoding both sides sign, the client's
        signing headers out, ours in."""
        raw, sep, query = ctx.upstream_path.partition(b"?")
        path = sigv4.wire_path(raw.decode("latin-1")).encode("latin-1") + sep + query
        ctx.upstream_path = path
        h = ctx.headers
        auth = self.signed_lines(ctx.method, path, ctx.body, h.content_type)
        ctx.upstream_head = _CLIENT_SIGNING.sub(b"", h.forward) + auth

    # -- the unified API

    def chat_request(self, chat: dict[str, Any], call: Call) -> None:
        S.check_params(chat, SUPPORTED, call)
        if chat.get("n") not in (None, 1) and not call.drop_params:
            raise UnsupportedParameter("n", call.provider, "one choice per request")
        system, messages = to_messages(chat.get("messages"), call)
        out: dict[str, Any] = {"messages": messages}
        if system:
            out["system"] = [{"text": s} for s in system]
        inference: dict[str, Any] = {}
        limit = chat.get("max_completion_tokens") or chat.get("max_tokens")
        if isinstance(limit, int) and limit > 0:
            inference["maxTokens"] = limit
        for ours, theirs in (("temperature", "temperature"), ("top_p", "topP")):
            if chat.get(ours) is not None:
                inference[theirs] = chat[ours]
        stop = chat.get("stop")
        if stop:
            inference["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
        if inference:
            out["inferenceConfig"] = inference
        tool_config = to_tool_config(chat, call)
        if tool_config is not None:
            out["toolConfig"] = tool_config
        endpoint = "/converse-stream" if call.stream else "/converse"
        call.path = (call.base_path + "/model/" + quote(call.model, safe="") + endpoint).encode()
        call.body = orjson.dumps(out)
        call.headers = b"content-type: application/json\r\n"

    def chat_response(self, body: bytes, call: Call) -> bytes:
        answer = orjson.loads(body)
        message = (answer.get("output") or {}).get("message") or {}
        text: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        for block in message.get("content") or ():
            if "text" in block:
                text.append(block["text"])
            elif "toolUse" in block:
                use = block["toolUse"]
                tool_calls.append({"id": use.get("toolUseId"), "type": "function", "function": {
                    "name": use.get("name"), "arguments": orjson.dumps(use.get("input", {})).decode()}})
        finish = FINISH.get(answer.get("stopReason") or "", "stop")
        content = "".join(text) if text or not tool_calls else None
        return S.completion(call, "", content, tool_calls, finish, to_usage(answer.get("usage")))

    def chat_stream(self, call: Call) -> ConverseStream:
        return ConverseStream(call)

    def error_body(self, status: int, body: bytes, call: Call) -> bytes:
        return to_error(status, body)


def to_error(status: int, body: bytes) -> bytes:
    """Bedrock errors are ``{"message": ...}`` (the exception's name is in a header)."""
    try:
        data = orjson.loads(body)
        message = data.get("message") or data.get("Message") if isinstance(data, dict) else None
    except orjson.JSONDecodeError:
        message = None
    if not message:
        message = f"provider answered {status}: {body[:200].decode('utf-8', 'replace')}"
    return S.error_json(message, ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
                        None)


def to_tool_config(chat: dict[str, Any], call: Call) -> dict[str, Any] | None:
    tools = chat.get("tools")
    if not tools:
        return None
    specs = []
    for tool in tools:
        fn = tool.get("function") or {}
        spec: dict[str, Any] = {"name": fn.get("name"),
                                "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}}}
        if fn.get("description"):
            spec["description"] = fn["description"]
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    choice = chat.get("tool_choice")
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif isinstance(choice, dict):
        config["toolChoice"] = {"tool": {"name": (choice.get("function") or {}).get("name")}}
    elif choice == "none" and not call.drop_params:
        raise UnsupportedParameter("tool_choice", call.provider, "Converse has no 'none' tool choice")
    return config


def to_messages(messages: Any, call: Call) -> tuple[list[str], list[dict[str, Any]]]:
    """(system texts, Converse messages with same-role turns merged)."""
    if not isinstance(messages, list) or not messages:
        raise UnsupportedParameter("messages", call.provider, "a non-empty list of messages is required")
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role in ("system", "developer"):
            text = S.text_of(m.get("content"))
            if text:
                system.append(text)
            continue
        if role == "tool":
            result = {"toolUseId": m.get("tool_call_id"), "content": [{"text": S.text_of(m.get("content"))}]}
            blocks: list[dict[str, Any]] = [{"toolResult": result}]
            role = "user"
        elif role in ("user", "assistant"):
            blocks = to_blocks(m.get("content"), i, call)
            if role == "assistant":
                blocks += [{"toolUse": {"toolUseId": id_, "name": name, "input": args}}
                           for id_, name, args in S.tool_calls(m, i, call)]
        else:
            raise UnsupportedParameter(f"messages[{i}].role", call.provider, f"unknown role {role!r}")
        S.add_turn(out, role, "content", blocks)
    return system, out


def to_blocks(content: Any, i: int, call: Call) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            blocks.append({"text": part.get("text", "")})
        elif kind == "image_url":
            blocks.append({"image": to_image((part.get("image_url") or {}).get("url", ""), f"messages[{i}].content[{j}]",
                                             call)})
        elif not call.drop_params:
            raise UnsupportedParameter(f"messages[{i}].content[{j}].type", call.provider, f"{kind!r} parts")
    return blocks


def to_image(url: str, where: str, call: Call) -> dict[str, Any]:
    """A ``data:`` URL as Converse image bytes (base64 in JSON, as the API's blob type is sent)."""
    head, sep, data = url.partition(",")
    media = head[5:].split(";")[0].lower() if head.startswith("data:") else ""
    if not sep or ";base64" not in head or media not in IMAGE_FORMATS:
        raise UnsupportedParameter(f"{where}.image_url", call.provider,
                                   "images must be base64 data: URLs of png, jpeg, gif or webp (Bedrock fetches no URLs)")
    return {"format": IMAGE_FORMATS[media], "source": {"bytes": data}}


BEDROCK = BedrockAdapter()
