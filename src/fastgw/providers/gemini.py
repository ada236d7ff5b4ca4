"""Google Gemini (AI Studio, ``generativelanguage.googleapis.com``), from and back to OpenAI's chat.

Requests go to ``/v1beta/models/{model}:generateContent``, streams to
``:streamGenerateContent?alt=sse`` (one ``GenerateContentResponse`` per SSE event). The key goes in
``x-goog-api-key`` (AI Studio also takes ``?key=``). Pass-through leaves the client's key where it
is, unless the gateway supplies one (a configured ``api_key`` or a gateway key's grant): then the
client's ``x-goog-api-key`` and ``?key=`` are removed, so Google sees exactly one key, the gateway's.

Choices where the APIs differ:
- System and developer messages become ``systemInstruction``; assistant turns are role ``model``.
- Images: data URLs become ``inlineData``. Gemini's ``fileData`` takes only its own file URIs, so an
  http(s) image URL is a 400 naming the part (dropped with ``drop_params``).
- Tool results need the function's name, which Gemini's ``functionResponse`` carries instead of an
  id: it is looked up from the assistant turn that made the call. Gemini gives calls no ids, so the
  gateway makes them up (``call_<n>_<hex>``).
- ``response_format``: json_object -> ``responseMimeType: application/json``; json_schema adds
  ``responseJsonSchema`` (full JSON Schema, unlike the OpenAPI subset of ``responseSchema``).
- Usage: completion_tokens = candidates + thoughts tokens (both are billed as output), with
  thoughts also reported as ``reasoning_tokens``; ``cachedContentTokenCount`` -> cached_tokens.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

import orjson

from fastgw.errors import Unauthorized
from fastgw.keys.token import PREFIX_BYTES
from fastgw.providers import chat_shapes as S
from fastgw.providers.base import Adapter, Call, UnsupportedParameter
from fastgw.providers.credentials import credential_line
from fastgw.providers.sse_events import SSEParser

if TYPE_CHECKING:
    from fastgw.context import RequestContext
    from fastgw.providers.table import Provider

_GOOG_KEY_LINE = re.compile(rb"(?im)^x-goog-api-key:[^\r\n]*\r?\n")
_KEY_PARAM = re.compile(rb"(?<=[?&])key=[^&]*(?:&|$)")
# A gateway key where Google's key goes: refused rather than sent to Google.
_GATEWAY_KEY_LINE = re.compile(rb"(?im)^x-goog-api-key:[ \t]*" + re.escape(PREFIX_BYTES))
_KEY_EQ_GATEWAY = b"key=" + PREFIX_BYTES

SUPPORTED = frozenset({
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "tools", "tool_choice",
    "response_format", "n", "seed", "presence_penalty", "frequency_penalty", "parallel_tool_calls",
})
GENERATION = (("temperature", "temperature"), ("top_p", "topP"), ("n", "candidateCount"), ("seed", "seed"),
              ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"))
FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
          "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
          "IMAGE_SAFETY": "content_filter"}
# google.rpc status -> OpenAI error type
ERROR_TYPES = {"INVALID_ARGUMENT": "invalid_request_error", "FAILED_PRECONDITION": "invalid_request_error",
               "UNAUTHENTICATED": "authentication_error", "PERMISSION_DENIED": "permission_error",
               "NOT_FOUND": "not_found_error", "RESOURCE_EXHAUSTED": "rate_limit_error"}


class GeminiAdapter(Adapter):
    name = "gemini"
    auth_header = b"x-goog-api-key"
    auth_prefix = b""
    translates = True
    prepares_passthrough = True

    def prepare_passthrough(self, ctx: RequestContext, provider: Provider) -> None:
        if provider.auth_line is None and ctx.principal is None:
            forward = ctx.headers.forward  # two substring tests on the common path, no regex
            if _KEY_EQ_GATEWAY in ctx.upstream_path or (PREFIX_BYTES in forward and _GATEWAY_KEY_LINE.search(forward)):
                raise Unauthorized("a gateway key goes in Authorization: Bearer fgw-... or Helicone-Auth, "
                                   "not in x-goog-api-key or ?key= (those are sent to Google as they are)")
            return  # the client's own key, in the header or the query, goes as it came
        auth = credential_line(ctx, provider)
        forward = ctx.headers.forward
        if auth:  # the gateway's key replaces whatever key the client put in the request
            forward = _GOOG_KEY_LINE.sub(b"", forward)
            raw, sep, query = ctx.upstream_path.partition(b"?")
            if sep and b"key=" in query:
                query = _KEY_PARAM.sub(b"", b"?" + query)[1:].rstrip(b"&")
                ctx.upstream_path = raw + b"?" + query if query else raw
        ctx.upstream_head = forward + auth

    def chat_request(self, chat: dict[str, Any], call: Call) -> None:
        S.check_params(chat, SUPPORTED, call)
        if chat.get("n") not in (None, 1) and not call.drop_params:
            raise UnsupportedParameter("n", call.provider, "one choice per request through the gateway")
        system, contents = to_contents(chat.get("messages"), call)
        out: dict[str, Any] = {"contents": contents}
        if system:
            out["systemInstruction"] = {"parts": [{"text": system}]}
        config: dict[str, Any] = {}
        for ours, theirs in GENERATION:
            if chat.get(ours) is not None and ours != "n":
                config[theirs] = chat[ours]
        limit = chat.get("max_completion_tokens") or chat.get("max_tokens")
        if isinstance(limit, int):
            config["maxOutputTokens"] = limit
        stop = chat.get("stop")
        if stop:
            config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
        fmt = chat.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
            config["responseMimeType"] = "application/json"
            schema = (fmt.get("json_schema") or {}).get("schema") if fmt["type"] == "json_schema" else None
            if schema:
                config["responseJsonSchema"] = schema
        if config:
            out["generationConfig"] = config
        if chat.get("tools"):
            out["tools"] = [{"functionDeclarations": [to_declaration(t) for t in chat["tools"]]}]
            choice = to_tool_config(chat.get("tool_choice"))
            if choice is not None:
                out["toolConfig"] = choice
        quoted = call.model.replace("/", "%2F")
        action = ":streamGenerateContent?alt=sse" if call.stream else ":generateContent"
        call.path = f"{call.base_path}/v1beta/models/{quoted}{action}".encode()
        call.body = orjson.dumps(out)
        call.headers = b"content-type: application/json\r\n"

    def chat_response(self, body: bytes, call: Call) -> bytes:
        data = orjson.loads(body)
        text, tool_calls, finish = read_candidate(data, call)
        content = text if text or not tool_calls else None
        return S.completion(call, data.get("modelVersion", ""), content, tool_calls, finish or "stop",
                            to_usage(data.get("usageMetadata")))

    def chat_stream(self, call: Call) -> GeminiStream:
        return GeminiStream(call)

    def error_body(self, status: int, body: bytes, call: Call) -> bytes:
        try:
            err = orjson.loads(body)
            err = err[0] if isinstance(err, list) and err else err
            err = err.get("error") or {}
        except (orjson.JSONDecodeError, AttributeError):
            err = {}
        code = err.get("status") if isinstance(err, dict) else None
        message = (err.get("message") if isinstance(err, dict) else None) or \
            f"provider answered {status}: {body[:200].decode('utf-8', 'replace')}"
        type_ = ERROR_TYPES.get(code or "", "server_error" if status >= 500 else "invalid_request_error")
        return S.error_json(message, type_, code)


def read_candidate(data: dict[str, Any], call: Call) -> tuple[str, list[dict[str, Any]], str | None]:
    """(text, tool calls, finish reason or None) of the first candidate of one response (or chunk)."""
    candidates = data.get("candidates") or [{}]
    cand = candidates[0]
    text: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for part in (cand.get("content") or {}).get("parts") or ():
        if part.get("thought"):
            continue  # thought summaries have no chat-completions equivalent
        if "text" in part:
            text.append(part["text"])
        elif "functionCall" in part:
            fc = part["functionCall"]
            tool_calls.append({"id": fc.get("id") or f"call_{os.urandom(6).hex()}", "type": "function",
                               "function": {"name": fc.get("name"), "arguments": orjson.dumps(fc.get("args", {})).decode()}})
    reason = cand.get("finishReason")
    finish = None
    if reason:
        finish = "tool_calls" if tool_calls and reason == "STOP" else FINISH.get(reason, "stop")
    elif (data.get("promptFeedback") or {}).get("blockReason"):
        finish = "content_filter"
    return "".join(text), tool_calls, finish


def to_usage(u: Any) -> dict[str, Any] | None:
    if not isinstance(u, dict):
        return None
    thoughts = u.get("thoughtsTokenCount") or 0
    return S.usage(u.get("promptTokenCount") or 0, (u.get("candidatesTokenCount") or 0) + thoughts,
                   u.get("cachedContentTokenCount") or 0, thoughts)


def to_declaration(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function") or {}
    out: dict[str, Any] = {"name": fn.get("name")}
    if fn.get("description"):
        out["description"] = fn["description"]
    if fn.get("parameters"):
        out["parametersJsonSchema"] = fn["parameters"]
    return out


def to_tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None or choice == "auto":
        return None
    if choice == "required":
        return {"functionCallingConfig": {"mode": "ANY"}}
    if choice == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}


def to_contents(messages: Any, call: Call) -> tuple[str, list[dict[str, Any]]]:
    if not isinstance(messages, list) or not messages:
        raise UnsupportedParameter("messages", call.provider, "a non-empty list of messages is required")
    system: list[str] = []
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, for functionResponse
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role in ("system", "developer"):
            system.append(S.text_of(m.get("content")))
            continue
        if role == "tool":
            content = S.text_of(m.get("content"))
            try:
                result = orjson.loads(content)
            except orjson.JSONDecodeError:
                result = None
            name = names.get(m.get("tool_call_id", ""), "")
            parts = [{"functionResponse": {"name": name, "response": result if isinstance(result, dict)
                                           else {"result": content}}}]
            role = "user"
        elif role == "user":
            parts = to_parts(m.get("content"), i, call)
        elif role == "assistant":
            parts = to_parts(m.get("content"), i, call)
            for id_, name, args in S.tool_calls(m, i, call):
                names[id_ or ""] = name or ""
                parts.append({"functionCall": {"name": name, "args": args}})
            role = "model"
        else:
            raise UnsupportedParameter(f"messages[{i}].role", call.provider, f"unknown role {role!r}")
        S.add_turn(out, role, "parts", parts)
    return "\n\n".join(s for s in system if s), out


def to_parts(content: Any, i: int, call: Call) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            parts.append({"text": part.get("text", "")})
        elif kind == "image_url" and (part.get("image_url") or {}).get("url", "").startswith("data:"):
            head, _, data = part["image_url"]["url"].partition(",")
            parts.append({"inlineData": {"mimeType": head[5:].split(";")[0], "data": data}})
        elif not call.drop_params:
            why = "Gemini takes images inline (data: URLs), not by http URL" if kind == "image_url" else f"{kind!r} parts"
            raise UnsupportedParameter(f"messages[{i}].content[{j}]", call.provider, why)
    return parts


class GeminiStream:
    """Gemini's SSE (each event a whole ``GenerateContentResponse`` holding the new part) as chunks."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.parser = SSEParser()
        self.model = ""
        self.started = False
        self.tools = 0
        self.reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.done = False
        self.usage_event = b""

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._event(data) for _, data in self.parser.feed(chunk))

    def finish(self) -> bytes:
        out = b"".join(self._event(data) for _, data in self.parser.finish())
        return out + self._end() if not self.done else out

    def _event(self, data: bytes) -> bytes:
        if self.done or not data:
            return b""
        try:
            ev = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        if isinstance(ev, dict) and "error" in ev:
            err = ev["error"] or {}
            self.done = True
            return S.error_event(err.get("message", "provider error"),
                                 ERROR_TYPES.get(err.get("status", ""), "server_error"), err.get("status"))
        self.model = ev.get("modelVersion") or self.model
        out = b""
        if not self.started:
            self.started = True
            out += S.chunk(self.call, self.model, {"role": "assistant", "content": ""})
        text, tool_calls, finish = read_candidate(ev, self.call)
        if text:
            out += S.chunk(self.call, self.model, {"content": text})
        if tool_calls:
            calls = [{"index": self.tools + n, **tc} for n, tc in enumerate(tool_calls)]
            self.tools += len(tool_calls)
            out += S.chunk(self.call, self.model, {"tool_calls": calls})
        if finish:
            self.reason = "tool_calls" if self.tools and finish == "stop" else finish
        if ev.get("usageMetadata"):
            self.usage = to_usage(ev["usageMetadata"])
        return out

    def _end(self) -> bytes:
        self.done = True
        out = S.chunk(self.call, self.model, {}, self.reason or "stop")
        if self.usage is not None:
            event = S.usage_chunk(self.call, self.model, self.usage)
            if self.call.include_usage:
                out += event
            else:
                self.usage_event = event
        return out + S.DONE


GEMINI = GeminiAdapter()
