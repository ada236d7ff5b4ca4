"""A fast mock LLM provider speaking OpenAI's and Anthropic's real wire formats.

It stands in for api.openai.com and api.anthropic.com in every test and
benchmark, so it has two jobs: be faithful enough that the official ``openai``
and ``anthropic`` SDKs work against it unchanged, and be cheap enough never to be
the bottleneck of a gateway benchmark. Hence no framework: one
``asyncio.Protocol`` per connection, ``httptools`` for parsing, ``orjson`` for
the few body fields we read, and a synchronous fast path that answers a plain
request inside ``data_received`` with a single ``transport.write``. Only
requests that need waiting (latency, slow streams, resets) get a task.

Per-request behaviour is driven by ``x-mock-*`` request headers (so tests can
steer it through a gateway that forwards unknown headers); the constructor and
CLI set server-wide defaults. See ``MockUpstream`` for the list.

Run standalone: ``python -m fastgw.testing.mock_upstream --port 9000``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import socket
import struct
import threading
import time
from collections import deque
from http import HTTPStatus
from typing import Any

import httptools
import orjson

from . import mock_payloads as P
from .mock_bedrock_azure import plan_cloud

_LINGER0 = struct.pack("ii", 1, 0)
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_STATUS_LINES[529] = b"HTTP/1.1 529 Overloaded\r\n"
_JSON_CT = b"content-type: application/json\r\ncontent-length: "
_SSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
             b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n")
_CLOSE = b"connection: close\r\n"
_CHUNKED_END = b"0\r\n\r\n"
_OK_JSON = b'{"ok":true}'


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} Error\r\n".encode()
    return line


def _json_head(status: int, length: int, keep_alive: bool, extra: bytes = b"") -> bytes:
    return b"%s%s%d\r\n%s%s\r\n" % (_status_line(status), _JSON_CT, length, extra, b"" if keep_alive else _CLOSE)


def _frame(events: list[bytes]) -> list[bytes]:
    """HTTP/1.1 chunk framing, one chunk per SSE event; the terminator rides on the last one."""
    out = [b"%x\r\n%s\r\n" % (len(e), e) for e in events]
    if out:
        out[-1] += _CHUNKED_END
    else:
        out.append(_CHUNKED_END)
    return out


class RecordedRequest:
    """One request as received: what in-process tests assert the gateway sent upstream."""

    __slots__ = ("method", "path", "headers", "body")

    def __init__(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.method = method
        self.path = path  # includes the query string, if any
        self.headers = headers  # [(lowercased name, value)] in arrival order
        self.body = body

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def json(self) -> Any:
        return orjson.loads(self.body)

    def __repr__(self) -> str:
        return f"RecordedRequest({self.method} {self.path}, {len(self.headers)} headers, {len(self.body)} bytes)"


class _Plan:
    """What to send for one request and how: decided up front so the write path stays trivial."""

    __slots__ = ("head", "body", "events", "latency", "delay", "reset", "keep_alive")

    def __init__(self, head: bytes, body: bytes | None, events: list[bytes] | None, latency: float,
                 delay: float, reset: bytes | None, keep_alive: bool) -> None:
        self.head, self.body, self.events = head, body, events
        self.latency, self.delay, self.reset, self.keep_alive = latency, delay, reset, keep_alive

    @property
    def immediate(self) -> bool:
        return not self.latency and self.reset is None and (self.events is None or not self.delay)


class MockUpstream:
    """Mock OpenAI + Anthropic server.

    Endpoints: POST /v1/chat/completions, /v1/embeddings, /v1/responses, /v1/messages,
    /v1beta/models/{model}:generateContent and :streamGenerateContent?alt=sse (Gemini);
    Bedrock's /model/{id}/converse[-stream] and /invoke[-with-response-stream] (SigV4 checked) and
    Azure's /openai/deployments/{d}/chat/completions (testing/mock_bedrock_azure.py);
    a request that forces a tool (Anthropic tool_choice any/tool, Gemini mode ANY) gets a tool call;
    GET /v1/models (Anthropic shape when an ``anthropic-version`` header is sent);
    GET /__mock/health and /__mock/stats (neither recorded nor affected by controls).

    Request-header controls (constructor keyword in brackets is the default):
      x-mock-latency-ms: float   delay before the response head          [latency_ms]
      x-mock-status: int >= 400  provider-shaped error (429 adds Retry-After: 1) [status]
      x-mock-reset: before|mid|reused  abort (RST) before any byte / after the head and half the SSE
                                 / before any byte, but only on a connection that already answered
                                 events (half the JSON body when not streaming) [reset]
      x-mock-chunks: int         number of content pieces                  [chunks]
      x-mock-chunk-delay-ms: f   delay between SSE events                  [chunk_delay_ms]
      x-mock-chunk-bytes: int    size of each piece (0 = short words)      [chunk_bytes]
      x-mock-echo-headers: 1     add "mock_received_headers" to non-streamed JSON answers
      x-mock-retry-after: text   Retry-After on error answers (replaces 429's "1"; "" = none)

    Failure knobs, per instance (so two mocks behind one route can differ; settable while running):
      fail_first=N    the first N requests answer ``fail_status``
      fail_every=N    then every N-th request does (2: half of them)
      fail_status     the status of those failures (503)
      ratelimit_remaining  when set, x-ratelimit-remaining-requests/-tokens on every answer
    """

    def __init__(self, *, latency_ms: float = 0.0, chunks: int = 5, chunk_delay_ms: float = 0.0,
                 chunk_bytes: int = 0, status: int = 0, reset: str | None = None,
                 embedding_dims: int = 8, max_recorded: int = 1000, fail_first: int = 0, fail_every: int = 0,
                 fail_status: int = 503, ratelimit_remaining: int | None = None) -> None:
        self.fail_first, self.fail_every, self.fail_status = fail_first, fail_every, fail_status
        self.ratelimit_remaining = ratelimit_remaining
        self.failed = 0  # requests answered by the failure knobs
        self.latency_ms, self.chunks, self.chunk_delay_ms = latency_ms, chunks, chunk_delay_ms
        self.chunk_bytes, self.status, self.embedding_dims = chunk_bytes, status, embedding_dims
        self.reset = reset.encode() if reset else None
        self.requests: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self.request_count = 0
        self.connections_opened = 0
        self.connections_open = 0
        self.write_pauses = 0  # times a client's socket stopped taking our writes (flow-control tests)
        self.port = 0
        self._conns: set[_Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._ids = itertools.count(1)
        self._routes = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("POST", "/v1/responses"): self._responses,
            ("POST", "/v1/messages"): self._messages,
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, ssl: Any = None) -> int:
        """Listen on ``host:port`` (0: any free port); ``ssl``, a server SSLContext, serves HTTPS."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, backlog=4096, ssl=ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and drop open connections (keep-alive clients would otherwise hold us)."""
        if self._server is None:
            return
        self._server.close()
        tasks = [c.task for c in self._conns if c.task is not None]
        for conn in list(self._conns):
            conn.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    # ------------------------------------------------------------------ request handling

    def _record(self, req: RecordedRequest) -> None:
        self.request_count += 1
        self.requests.append(req)

    def plan(self, req: RecordedRequest, ctl: dict[bytes, bytes], keep_alive: bool) -> _Plan:
        """Turn one request into a _Plan; all provider logic lives here and in mock_payloads."""
        path = req.path.split("?", 1)[0]
        if path.startswith("/__mock/"):
            return self._plan_mock_admin(req.method, path, keep_alive)
        latency = _num(ctl, b"x-mock-latency-ms", self.latency_ms, float) / 1000.0
        delay = _num(ctl, b"x-mock-chunk-delay-ms", self.chunk_delay_ms, float) / 1000.0
        reset = ctl.get(b"x-mock-reset", self.reset)
        reset = reset.strip().lower() if reset else None
        cloud = plan_cloud(self, req, ctl, keep_alive, latency, delay, reset)  # Bedrock and Azure paths
        if cloud is not None:
            return cloud

        anthropic = path.startswith("/v1/messages")
        gemini = path.startswith("/v1beta/models/")
        status = _num(ctl, b"x-mock-status", self.status, int)
        route = self._routes.get((req.method, path))
        if gemini and req.method == "POST" and path.endswith((":generateContent", ":streamGenerateContent")):
            route = self._gemini
        n = self.request_count
        if (self.fail_first and n <= self.fail_first) or (self.fail_every and n % self.fail_every == 0):
            status = self.fail_status
            self.failed += 1
        if status >= 400:
            return self._plan_error(status, f"mock error {status}", anthropic, keep_alive, latency, reset,
                                    ctl.get(b"x-mock-retry-after"), gemini=gemini)
        if route is None:
            if req.method == "GET" and path == "/v1/models":
                body = P.ANTHROPIC_MODELS if req.header("anthropic-version") else P.OPENAI_MODELS
                return _Plan(_json_head(200, len(body), keep_alive), body, None, latency, 0.0, reset, keep_alive)
            known = any(p == path for _, p in self._routes)
            code = 405 if known else 404
            msg = f"Invalid URL ({req.method} {path})" if code == 404 else f"Method {req.method} not allowed"
            return self._plan_error(code, msg, anthropic, keep_alive, latency, reset, gemini=gemini)
        try:
            data = orjson.loads(req.body) if req.body else {}
            if not isinstance(data, dict):
                raise ValueError("body must be a JSON object")
        except ValueError as e:
            return self._plan_error(400, f"invalid JSON body: {e}", anthropic, keep_alive, latency, reset)

        n = max(0, _num(ctl, b"x-mock-chunks", self.chunks, int))
        size = _num(ctl, b"x-mock-chunk-bytes", self.chunk_bytes, int)
        model = data.get("model") if not gemini else path[len("/v1beta/models/"):].split(":", 1)[0]
        if not isinstance(model, str):
            model = "mock-model"
        if gemini:
            data["stream"] = ":streamGenerateContent" in path
        out = route(data, model, P.content_pieces(n, size), P.prompt_tokens(req.body))
        if isinstance(out, list):
            head = _SSE_HEAD + (b"\r\n" if keep_alive else _CLOSE + b"\r\n")
            return _Plan(head, None, _frame(out), latency, delay, reset, keep_alive)
        if ctl.get(b"x-mock-echo-headers") == b"1":
            out["mock_received_headers"] = [list(h) for h in req.headers]
        body = orjson.dumps(out)
        extra = self._remaining_headers() if self.ratelimit_remaining is not None else b""
        return _Plan(_json_head(200, len(body), keep_alive, extra), body, None, latency, delay, reset, keep_alive)

    def _remaining_headers(self) -> bytes:
        return b"x-ratelimit-remaining-requests: %d\r\nx-ratelimit-remaining-tokens: %d\r\n" % (
            self.ratelimit_remaining, self.ratelimit_remaining)

    def _plan_error(self, status: int, message: str, anthropic: bool, keep_alive: bool,
                    latency: float, reset: bytes | None, retry_after: bytes | None = None, *,
                    gemini: bool = False) -> _Plan:
        body = P.anthropic_error(status, message) if anthropic else P.openai_error(status, message)
        if gemini:
            body = P.gemini_error(status, message)
        extra = b"retry-after: 1\r\n" if status == 429 else b""
        if retry_after is not None:
            extra = b"retry-after: %s\r\n" % retry_after if retry_after.strip() else b""
        if self.ratelimit_remaining is not None:
            extra += self._remaining_headers()
        return _Plan(_json_head(status, len(body), keep_alive, extra), body, None, latency, 0.0, reset, keep_alive)

    def _plan_mock_admin(self, method: str, path: str, keep_alive: bool) -> _Plan:
        if method == "GET" and path == "/__mock/health":
            body = _OK_JSON
        elif method == "GET" and path == "/__mock/stats":
            body = orjson.dumps({"requests": self.request_count, "connections_opened": self.connections_opened,
                                 "connections_open": self.connections_open})
        else:
            body = P.openai_error(404, f"Invalid URL ({method} {path})")
            return _Plan(_json_head(404, len(body), keep_alive), body, None, 0.0, 0.0, None, keep_alive)
        return _Plan(_json_head(200, len(body), keep_alive), body, None, 0.0, 0.0, None, keep_alive)

    # Each route returns a dict (JSON answer) or a list of SSE events.

    def _chat(self, data: dict, model: str, pieces: tuple[str, ...], ptok: int) -> dict | list[bytes]:
        cid, created = f"chatcmpl-mock{next(self._ids)}", int(time.time())
        if data.get("stream"):
            opts = data.get("stream_options")
            usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
            return P.chat_stream(cid, created, model, pieces, ptok, usage)
        return P.chat_completion(cid, created, model, pieces, ptok)

    def _embeddings(self, data: dict, model: str, pieces: tuple[str, ...], ptok: int) -> dict:
        dims = data.get("dimensions")
        dims = dims if isinstance(dims, int) and 0 < dims <= 8192 else self.embedding_dims
        b64 = data.get("encoding_format") == "base64"
        return P.embeddings(model, P.embedding_inputs(data.get("input")), dims, b64, ptok)

    def _responses(self, data: dict, model: str, pieces: tuple[str, ...], ptok: int) -> dict | list[bytes]:
        n = next(self._ids)
        rid, mid, created = f"resp_mock{n}", f"msg_mock{n}", int(time.time())
        if data.get("stream"):
            return P.responses_stream(rid, mid, created, model, pieces, ptok)
        return P.response_object(rid, mid, created, model, "".join(pieces), ptok, len(pieces))

    def _messages(self, data: dict, model: str, pieces: tuple[str, ...], ptok: int) -> dict | list[bytes]:
        mid = f"msg_mock{next(self._ids)}"
        tool = P.anthropic_forced_tool(data)
        if tool is not None:
            return (P.anthropic_tool_stream if data.get("stream") else P.anthropic_tool_message)(mid, model, tool, ptok)
        if data.get("stream"):
            return P.anthropic_stream(mid, model, pieces, ptok)
        return P.anthropic_message(mid, model, pieces, ptok)


    def _gemini(self, data: dict, model: str, pieces: tuple[str, ...], ptok: int) -> dict | list[bytes]:
        if data.get("stream"):
            return P.gemini_stream(model, data, pieces, ptok)
        return P.gemini_response(model, P.gemini_parts(data, pieces), ptok, len(pieces))


def _num(ctl: dict[bytes, bytes], name: bytes, default: Any, kind: type) -> Any:
    raw = ctl.get(name)
    if raw is None:
        return default
    try:
        return kind(raw)
    except ValueError:
        return default


class _Connection(asyncio.Protocol):
    """One client connection: parse with httptools, answer in order (pipelining-safe)."""

    def __init__(self, mock: MockUpstream) -> None:
        self.mock = mock
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.ctl: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.queue: deque[_Plan] = deque()
        self.task: asyncio.Task | None = None
        self.closed = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future | None = None
        self.served = 0  # requests answered on this connection (x-mock-reset: reused)

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.mock.connections_opened += 1
        self.mock.connections_open += 1
        self.mock._conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.mock.connections_open -= 1
        self.mock._conns.discard(self)
        if self.task is not None:
            self.task.cancel()
        self._wake_writer()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            if not self.closed:
                body = P.openai_error(400, "malformed HTTP request")
                self.transport.write(_json_head(400, len(body), False) + body)
                self.transport.close()
                self.closed = True

    def pause_writing(self) -> None:
        self.write_paused = True
        self.mock.write_pauses += 1

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writer()

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        self.url, self.headers, self.ctl, self.body = b"", [], {}, []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name.startswith(b"x-mock-"):
            self.ctl[name] = value
        elif name == b"expect" and value.lower() == b"100-continue" and not self.closed:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.closed:
            return
        parser = self.parser
        path = self.url.decode("latin-1")
        method = parser.get_method().decode()
        # HEAD is answered as GET without the body, as real servers do.
        req = RecordedRequest("GET" if method == "HEAD" else method, path, self.headers, b"".join(self.body))
        if not path.startswith("/__mock/"):
            self.mock._record(req)
        self.served += 1
        if self.served > 1 and self.ctl.get(b"x-mock-reset", b"").strip().lower() == b"reused":
            return self.abort()  # a pooled connection that "died" while idle, seen only on use
        plan = self.mock.plan(req, self.ctl, parser.should_keep_alive())
        if method == "HEAD":
            plan.body, plan.events = b"", None
        if self.task is None and plan.immediate:
            self._send_all(plan)  # the fast path: no task, one write
            return
        self.queue.append(plan)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run_queue())

    # -- writing

    def _send_all(self, plan: _Plan) -> None:
        payload = plan.body if plan.events is None else b"".join(plan.events)
        self.transport.write(plan.head + payload)
        if not plan.keep_alive:
            self.close()

    async def _run_queue(self) -> None:
        try:
            while self.queue and not self.closed:
                plan = self.queue.popleft()
                if plan.immediate:
                    self._send_all(plan)
                else:
                    await self._send_slow(plan)
        finally:
            self.task = None

    async def _send_slow(self, plan: _Plan) -> None:
        if plan.latency:
            await asyncio.sleep(plan.latency)
        if plan.reset == b"before":
            return self.abort()
        mid = plan.reset == b"mid"
        write = self.transport.write
        if plan.events is None:
            body = plan.body[: len(plan.body) // 2] if mid else plan.body
            write(plan.head + body)
        else:
            events = plan.events
            stop = max(1, len(events) // 2) if mid else len(events)
            write(plan.head + events[0])
            for i in range(1, stop):
                if plan.delay:
                    await asyncio.sleep(plan.delay)
                if self.write_paused:
                    await self._drain()
                if self.closed:
                    return
                write(events[i])
        if mid:
            await self._drain()
            return self.abort()
        if not plan.keep_alive:
            self.close()

    async def _drain(self) -> None:
        if self.write_paused and not self.closed:
            self.drain_waiter = asyncio.get_running_loop().create_future()
            await self.drain_waiter

    def _wake_writer(self) -> None:
        waiter, self.drain_waiter = self.drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def abort(self) -> None:
        """Reset the connection (RST, not FIN): SO_LINGER 0 then abort."""
        if self.closed:
            return
        self.closed = True
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
            except OSError:
                pass
        self.transport.abort()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class MockUpstreamThread:
    """Run a MockUpstream on its own event loop in a daemon thread, for synchronous tests.

    with MockUpstreamThread(chunks=3) as up:
        openai.OpenAI(base_url=up.url + "/v1", ...)
        up.mock.requests[-1]
    """

    def __init__(self, mock: MockUpstream | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 **options: Any) -> None:
        self.mock = mock if mock is not None else MockUpstream(**options)
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MockUpstreamThread:
        self._thread = threading.Thread(target=self._main, name="mock-upstream", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        loop = self._loop = _new_loop()
        asyncio.set_event_loop(loop)
        try:
            self.port = loop.run_until_complete(self.mock.start(self.host, self.port))
        except BaseException as e:  # surfaced to the starting thread
            self._error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
            loop.run_until_complete(self.mock.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> MockUpstreamThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a hard dependency, but stay usable without it
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _serve(args: argparse.Namespace) -> None:
    mock = MockUpstream(latency_ms=args.latency_ms, chunks=args.chunks, chunk_delay_ms=args.chunk_delay_ms,
                        chunk_bytes=args.chunk_bytes, fail_every=args.fail_every, fail_status=args.fail_status)
    port = await mock.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"mock upstream listening on http://{args.host}:{port}", flush=True)
    await stop.wait()
    await mock.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m fastgw.testing.mock_upstream", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--chunks", type=int, default=5)
    ap.add_argument("--chunk-delay-ms", type=float, default=0.0)
    ap.add_argument("--chunk-bytes", type=int, default=0)
    ap.add_argument("--fail-every", type=int, default=0, help="every N-th request fails (2: half)")
    ap.add_argument("--fail-status", type=int, default=503)
    args = ap.parse_args(argv)
    loop = _new_loop()
    try:
        loop.run_until_complete(_serve(args))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
