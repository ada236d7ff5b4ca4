"""The mock upstream's AWS Bedrock and Azure OpenAI endpoints (testing/mock_upstream.py calls ``plan_cloud``).

Bedrock (shapes from the Bedrock Runtime API reference):
  POST /model/{modelId}/converse                     Converse JSON
  POST /model/{modelId}/converse-stream              ConverseStream, AWS event-stream frames
  POST /model/{modelId}/invoke                       InvokeModel with an Anthropic Messages body
  POST /model/{modelId}/invoke-with-response-stream  the same as event-stream ``chunk`` events
Every Bedrock request must carry a SigV4 signature made with ``MOCK_AWS_CREDENTIALS`` for the
``bedrock`` service; the mock recomputes it from what it received, canonicalising the path the way
AWS does (decoded, encoded once, then once more), and answers 403 ``InvalidSignatureException``
on any difference, so a test through it fails on a wrong signature. A forced tool
(``toolChoice`` any/tool) is answered with a ``toolUse`` block; the model id ``CORRUPT_MODEL``
gets a ConverseStream whose third frame fails its CRC.

Azure OpenAI: POST /openai/deployments/{deployment}/chat/completions?api-version=... needs the
``api-version`` query (404 otherwise, as Azure answers) and ``api-key: MOCK_AZURE_API_KEY`` (401
otherwise); the answer is OpenAI's, with Azure's ``prompt_filter_results``.

``x-mock-status: N`` (or the mock's ``status``) makes either answer with its provider's error shape.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from fastgw.providers import eventstream, sigv4

from . import mock_payloads as P

if TYPE_CHECKING:
    from .mock_upstream import MockUpstream, RecordedRequest, _Plan

MOCK_AWS_CREDENTIALS = sigv4.AwsCredentials("AKIDMOCKFASTGW", "mock/Secret+Key/for/fastgw/tests")
MOCK_AZURE_API_KEY = "azure-mock-key-0123"
CORRUPT_MODEL = "mock.corrupt-frames-v1:0"  # ConverseStream for this model id sends a frame with a bad CRC
_AWS_ERRORS = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
               408: "ModelTimeoutException", 429: "ThrottlingException", 500: "InternalServerException",
               503: "ServiceUnavailableException"}
_EVENTSTREAM_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: application/vnd.amazon.eventstream\r\n"
                     b"x-amzn-requestid: 6f1e0c1e-mock\r\ntransfer-encoding: chunked\r\n")


def plan_cloud(mock: MockUpstream, req: RecordedRequest, ctl: dict[bytes, bytes], keep_alive: bool,
               latency: float, delay: float, reset: bytes | None) -> _Plan | None:
    """A plan for a Bedrock or Azure path; None for every other path."""
    from .mock_upstream import _CLOSE, _frame, _json_head, _Plan

    path = req.path.split("?", 1)[0]
    status = int(ctl.get(b"x-mock-status", b"0") or 0) or mock.status
    if path.startswith("/model/") and req.method == "POST":
        model, _, action = unquote(path[len("/model/"):]).rpartition("/")
        extra = b"x-amzn-requestid: 6f1e0c1e-mock\r\n"
        denied = _check_signature(req)
        if denied is not None:
            status, body = 403, orjson.dumps({"message": denied})
            extra += b"x-amzn-errortype: InvalidSignatureException\r\n"
        elif status >= 400:
            body = orjson.dumps({"message": f"mock error {status}"})
            extra += b"x-amzn-errortype: %s\r\n" % _AWS_ERRORS.get(status, "InternalServerException").encode()
        else:
            out = _bedrock(mock, action, model, req, ctl)
            if out is None:
                status, body = 404, orjson.dumps({"message": f"Unknown operation {action!r}"})
            elif isinstance(out, list):
                head = _EVENTSTREAM_HEAD + (b"\r\n" if keep_alive else _CLOSE + b"\r\n")
                return _Plan(head, None, _frame(out), latency, delay, reset, keep_alive)
            else:
                body, extra = out
                status = 200
        return _Plan(_json_head(status, len(body), keep_alive, extra), body, None, latency, delay, reset, keep_alive)
    if path.startswith("/openai/deployments/") and path.endswith("/chat/completions") and req.method == "POST":
        deployment = unquote(path[len("/openai/deployments/"):-len("/chat/completions")])
        query = req.path.partition("?")[2]
        if "api-version=" not in query:
            status, body = 404, orjson.dumps({"error": {"code": "404", "message": "Resource not found"}})
        elif req.header("api-key") != MOCK_AZURE_API_KEY:
            status, body = 401, orjson.dumps({"error": {"code": "401", "message": (
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
                "valid key for an active subscription and use a correct regional API endpoint for your resource.")}})
        elif status >= 400:
            body = orjson.dumps({"error": {"code": str(status), "message": f"mock error {status}"}})
        else:
            data = orjson.loads(req.body or b"{}")
            n = int(ctl.get(b"x-mock-chunks", b"0") or 0) or mock.chunks
            out = mock._chat(data, deployment, P.content_pieces(n), P.prompt_tokens(req.body))
            if isinstance(out, list):
                head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                        b"transfer-encoding: chunked\r\n") + (b"\r\n" if keep_alive else _CLOSE + b"\r\n")
                filters = P.sse_data({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                                      "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]})
                return _Plan(head, None, _frame([filters, *out]), latency, delay, reset, keep_alive)
            out["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": {}}]
            body = orjson.dumps(out)
            status = 200
        extra = b"retry-after: 1\r\n" if status == 429 else b""
        return _Plan(_json_head(status, len(body), keep_alive, extra), body, None, latency, delay, reset, keep_alive)
    return None


def _check_signature(req: RecordedRequest) -> str | None:
    """None when the request is signed with the mock credentials; else AWS's complaint."""
    auth = req.header("authorization")
    if not auth:
        return "Missing Authentication Token"
    fields = sigv4.parse_authorization(auth)
    if fields is None:
        return "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters."
    key_id, date, region, service, terminal = (fields["Credential"].split("/") + [""] * 5)[:5]
    if key_id != MOCK_AWS_CREDENTIALS.access_key_id:
        return "The security token included in the request is invalid."
    if service != "bedrock" or terminal != "aws4_request":
        return f"Credential should be scoped to correct service: 'bedrock' (got {service!r})."
    signed = fields["SignedHeaders"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return "SignedHeaders must include host and x-amz-date."
    if req.header("x-amz-security-token") is not None and "x-amz-security-token" not in signed:
        return "x-amz-security-token must be signed."
    headers = [(n, v) for n, v in req.headers if n in signed]
    amz_date = req.header("x-amz-date") or ""
    raw_path, _, query = req.path.partition("?")
    path = sigv4.wire_path(raw_path)  # what AWS does: the path decoded, encoded once, then once more
    creq, _ = sigv4.canonical_request(req.method, path, query, headers, hashlib.sha256(req.body).hexdigest())
    scope = f"{date}/{region}/{service}/aws4_request"
    key = sigv4.signing_key(MOCK_AWS_CREDENTIALS.secret_access_key, date, region, service)
    expected = hmac.new(key, sigv4.string_to_sign(amz_date, scope, creq).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields["Signature"]):
        return ("The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method. Consult the service documentation for details.")
    return None


def _bedrock(mock: MockUpstream, action: str, model: str, req: RecordedRequest,
             ctl: dict[bytes, bytes]) -> tuple[bytes, bytes] | list[bytes] | None:
    data = orjson.loads(req.body or b"{}")
    n = int(ctl.get(b"x-mock-chunks", b"0") or 0) or mock.chunks
    pieces, ptok = P.content_pieces(n), P.prompt_tokens(req.body)
    if action in ("converse", "converse-stream"):
        tool = _forced_tool(data)
        if action == "converse":
            return orjson.dumps(converse_answer(pieces, ptok, tool)), b""
        frames = converse_stream(pieces, ptok, tool)
        if model == CORRUPT_MODEL:  # the third frame's last payload byte flipped: its CRC no longer matches
            frames[2] = frames[2][:-5] + bytes([frames[2][-5] ^ 0x20]) + frames[2][-4:]
        return frames
    if action in ("invoke", "invoke-with-response-stream"):
        mid = f"msg_bdrk_mock{next(mock._ids)}"
        if action == "invoke":
            out = P.anthropic_message(mid, model, pieces, ptok)
            usage = out["usage"]
            return orjson.dumps(out), (b"x-amzn-bedrock-input-token-count: %d\r\nx-amzn-bedrock-output-token-count: %d\r\n"
                                       % (usage["input_tokens"], usage["output_tokens"]))
        frames = []
        for sse in P.anthropic_stream(mid, model, pieces, ptok):
            payload = sse.split(b"data: ", 1)[1].strip()
            frames.append(eventstream.event("chunk", orjson.dumps({"bytes": base64.b64encode(payload).decode()})))
        return frames
    return None


def _forced_tool(data: dict[str, Any]) -> dict[str, Any] | None:
    config = data.get("toolConfig") or {}
    tools = [t.get("toolSpec") or {} for t in config.get("tools") or ()]
    choice = config.get("toolChoice") or {}
    if not tools or not ("any" in choice or "tool" in choice):
        return None
    named = [t for t in tools if t.get("name") == (choice.get("tool") or {}).get("name")]
    return (named or tools)[0]


def converse_answer(pieces: tuple[str, ...], ptok: int, tool: dict[str, Any] | None) -> dict[str, Any]:
    if tool is not None:
        content: list[dict[str, Any]] = [{"toolUse": {"toolUseId": "tooluse_mock01", "name": tool.get("name"),
                                                      "input": P.sample_args((tool.get("inputSchema") or {}).get("json"))}}]
        reason, out = "tool_use", 12
    else:
        content, reason, out = [{"text": "".join(pieces)}], "end_turn", len(pieces)
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": reason,
            "usage": {"inputTokens": ptok, "outputTokens": out, "totalTokens": ptok + out},
            "metrics": {"latencyMs": 123}}


def converse_stream(pieces: tuple[str, ...], ptok: int, tool: dict[str, Any] | None) -> list[bytes]:
    """messageStart, one content block (text deltas, or a toolUse whose input JSON comes in two
    pieces), messageStop, metadata: each one event-stream frame."""
    ev = eventstream.event
    frames = [ev("messageStart", b'{"p":"abcdefgh","role":"assistant"}')]
    if tool is not None:
        args = orjson.dumps(P.sample_args((tool.get("inputSchema") or {}).get("json"))).decode()
        start = {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_mock01", "name": tool.get("name")}}}
        frames.append(ev("contentBlockStart", orjson.dumps(start)))
        for piece in (args[:len(args) // 2], args[len(args) // 2:]):
            frames.append(ev("contentBlockDelta", orjson.dumps({"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}})))
        reason, out = "tool_use", 12
    else:
        for piece in pieces:
            frames.append(ev("contentBlockDelta", orjson.dumps({"contentBlockIndex": 0, "delta": {"text": piece}})))
        reason, out = "end_turn", len(pieces)
    frames.append(ev("contentBlockStop", b'{"contentBlockIndex":0}'))
    frames.append(ev("messageStop", orjson.dumps({"stopReason": reason})))
    usage = {"inputTokens": ptok, "outputTokens": out, "totalTokens": ptok + out}
    frames.append(ev("metadata", orjson.dumps({"usage": usage, "metrics": {"latencyMs": int(time.time()) % 100 + 1}})))
    return frames
