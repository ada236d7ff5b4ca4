"""HttpProtocol: one client connection, parsed by httptools, answered by the gateway core.

The parser callbacks only collect bytes and flags into an ``Exchange``; a completed exchange joins
the queue, and one task at a time answers the head of the queue, so pipelined requests are answered
in order. Timers, one at a time, while no response is in progress: a request head must arrive within
``header_timeout`` and its body within ``body_timeout`` (else 408 and close); an idle keep-alive
connection is closed after ``keepalive_timeout``.

Back-pressure, both directions: we stop reading from the client while too many pipelined requests
wait, and while the client isn't reading what we write; when a streamed response outruns the
client we stop reading the upstream (``drain`` holds the relay, whose unread chunks pause the
upstream socket).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Callable

import httptools

from fastgw._native import headers as native_headers
from fastgw._native.errors import HeaderError
from fastgw.app import gateway_headers, sse_error_event
from fastgw.context import RequestContext, request_id_of_refused
from fastgw.errors import (
    BadRequest, BodyTooLarge, GatewayError, HeadersTooLarge, InvalidHeader, MalformedHTTP, Overloaded,
    RequestTimeout, as_gateway_error,
)
from fastgw.redact import redact_target
from fastgw.requestlog.record import BodyCapture, content_type_of, is_event_stream
from fastgw.server.flow_control import FlowControl
from fastgw.server.responses import CHUNKED_END, CONTINUE, OVERLOADED, STATUS_LINES, error_response

if TYPE_CHECKING:
    from fastgw.server.server import ServerState
    from fastgw.stages.base import Response

log = logging.getLogger("fastgw.server")

MAX_PIPELINED = 16  # queued requests before we stop reading the socket
CLIENT_LEFT = GatewayError("the client closed the connection before the response", code="client_disconnected")
# A request cut short by our own shutdown (the grace period ran out): not the client's doing, so
# not logged as CLIENT_LEFT. Nothing reaches the client; the status is for the log.
GATEWAY_SHUTDOWN = Overloaded("the gateway shut down before the response was complete", code="gateway_shutdown")


class _Abort(Exception):
    """Raised inside a parser callback to stop parsing; the real error is in ``protocol._abort``."""


class Outcome:
    """What the log needs to know about how a response went, filled in while it is sent."""

    __slots__ = ("capture", "error", "t_first_byte", "client_left")

    def __init__(self, capture: BodyCapture | None) -> None:
        self.capture = capture  # a copy of a streamed body, when logging
        self.error: GatewayError | None = None  # what cut a stream short
        self.t_first_byte = 0  # perf_counter_ns when the response head went out
        self.client_left = False


class Exchange:
    """One request, from its first byte to the end of its response."""

    __slots__ = (
        "method", "url", "raw_headers", "parsed", "body_parts", "body_size", "keep_alive",
        "http_10", "t_start", "expect_100", "upgrade",
    )

    def __init__(self) -> None:
        self.method = b""
        self.url = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.parsed: native_headers.ParsedHeaders | None = None
        self.body_parts: list[bytes] = []
        self.body_size = 0
        self.keep_alive = True
        self.http_10 = False
        self.t_start = 0
        self.expect_100 = False
        self.upgrade = False  # asked to switch protocols: answered in HTTP/1.1, then closed


class HttpProtocol(asyncio.Protocol):
    def __init__(self, state: ServerState) -> None:
        # Per-connection state
        self.state = state
        self.limits = state.config.server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.flow: FlowControl | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Exchange] = deque()
        self.task: asyncio.Task[None] | None = None  # answering the exchange at the head of the queue
        # One timeout is pending at a time (head, body or keep-alive), due at _deadline. The handle
        # is not re-created per request: it may fire early, and then re-arms for the deadline.
        self.timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline: float | None = None
        self._timeout_cb: Callable[[], None] | None = None
        self.closing = False  # shutting down, or the client asked to close: no more requests
        self.closed = False
        self._abort: GatewayError | None = None
        self.upgraded = False  # the client asked to switch protocols; we answer, then close
        self.shut_down = False  # aborted by the server's shutdown: a cancelled answer is ours, not the client's
        # Per-request state (the request being parsed)
        self.ex: Exchange | None = None
        self.head_size = 0  # bytes of the head seen by the parser callbacks
        self.head_raw = 0  # bytes of reads that began inside an unfinished head

    # Protocol interface ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if len(self.state.connections) >= self.limits.max_connections:
            self.state.refused += 1
            transport.write(OVERLOADED)  # type: ignore[attr-defined]
            transport.close()
            self.closed = True
            return
        self.state.connections.add(self)
        self.flow = FlowControl(self.transport)  # type: ignore[arg-type]
        self.transport.set_write_buffer_limits(high=self.limits.write_high_water)  # type: ignore[union-attr]
        self._set_timer(self.limits.header_timeout, self._on_header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state.connections.discard(self)
        self._drop_timer()
        if self.task is not None and not self.task.done():
            self.task.cancel()  # the client left: stop the upstream request, don't read it out
        if self.flow is not None:
            self.flow.resume_writing()  # wake a relay waiting on drain; it will see the cancel

    def data_received(self, data: bytes) -> None:
        if self._abort is not None or self.upgraded or (self.closing and self.task is None and not self.queue):
            return  # past a parse error or an ignored upgrade, or shutting down: nothing more is read
        before = self.ex
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # llhttp has finished the request (one with no body: see on_headers_complete) and
            # treats what follows as another protocol. We answer it in HTTP/1.1 and then close.
            self.upgraded = True
            self.flow.pause_reading()  # type: ignore[union-attr]
            return
        except httptools.HttpParserCallbackError:
            self._fail_parse(self._abort or MalformedHTTP("malformed HTTP request"))
            return
        except httptools.HttpParserError as exc:
            self._fail_parse(MalformedHTTP(f"malformed HTTP request: {exc}"))
            return
        ex = self.ex
        if ex is not None and ex is before and ex.parsed is None:
            # A head still incomplete after a whole read: count raw bytes too, since httptools
            # buffers a header line it hasn't finished and on_header can't see it yet. Only reads
            # that began inside this head count, so the tail of a previous body never does.
            self.head_raw += len(data)
            if self.head_raw > self.limits.max_head_size:
                self._fail_parse(HeadersTooLarge(f"request head is over {self.limits.max_head_size} bytes"))

    def pause_writing(self) -> None:
        self.flow.pause_writing()  # type: ignore[union-attr]
        self.flow.pause_reading()  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        self.flow.resume_writing()  # type: ignore[union-attr]
        if len(self.queue) < MAX_PIPELINED:
            self.flow.resume_reading()  # type: ignore[union-attr]

    # Parser callbacks --------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.ex = Exchange()
        self.head_size = 0
        self.head_raw = 0
        if self._deadline is not None and self.task is None:  # idle keep-alive ends; the head's clock starts
            self._set_timer(self.limits.header_timeout, self._on_header_timeout)

    def on_url(self, url: bytes) -> None:
        ex = self.ex
        ex.url += url  # type: ignore[union-attr]
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.ex.raw_headers.append((name, value))  # type: ignore[union-attr]
        self.head_size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        ex = self.ex
        assert ex is not None
        self._cancel_timer()
        if self.head_size > self.limits.max_head_size:
            self._abort = HeadersTooLarge(f"request head is over {self.limits.max_head_size} bytes")
            raise _Abort
        ex.method = self.parser.get_method()
        ex.http_10 = self.parser.get_http_version() == "1.0"
        ex.t_start = time.perf_counter_ns()
        try:
            ex.parsed = native_headers.parse_headers(ex.raw_headers)
        except HeaderError as exc:
            self._abort = InvalidHeader(str(exc))
            raise _Abort from None
        if ex.parsed.host is None and not ex.http_10:
            self._abort = InvalidHeader("an HTTP/1.1 request needs a Host header")
            raise _Abort
        if self.parser.should_upgrade():
            # Upgrade (h2c, websocket) or CONNECT: llhttp would skip the body and stop parsing. A
            # bodiless upgrade request is answered in HTTP/1.1, ignoring the Upgrade header as RFC
            # 9110 allows, and the connection closes after it; anything else is refused here.
            if ex.method == b"CONNECT" or ex.parsed.content_length > 0 or ex.parsed.chunked:
                self._abort = BadRequest("protocol upgrades and CONNECT are not supported")
                raise _Abort
            ex.upgrade = True
        if ex.parsed.content_length > self.limits.max_body_size:
            self._abort = BodyTooLarge(f"request body is over the {self.limits.max_body_size} byte limit")
            raise _Abort
        if self.task is None and (ex.parsed.content_length > 0 or ex.parsed.chunked):
            self._set_timer(self.limits.body_timeout, self._on_body_timeout)
        if ex.parsed.expect_continue and not ex.http_10:
            if self.task is None and not self.queue:
                self.transport.write(CONTINUE)  # type: ignore[union-attr]
            else:
                ex.expect_100 = True  # sent once the responses ahead of it are out

    def on_body(self, body: bytes) -> None:
        ex = self.ex
        assert ex is not None
        ex.body_size += len(body)
        if ex.body_size > self.limits.max_body_size:
            self._abort = BodyTooLarge(f"request body is over the {self.limits.max_body_size} byte limit")
            raise _Abort
        ex.body_parts.append(body)

    def on_message_complete(self) -> None:
        ex = self.ex
        assert ex is not None
        self.ex = None
        ex.keep_alive = self.parser.should_keep_alive() and not ex.upgrade
        self.queue.append(ex)
        if self.task is None:
            self._cancel_timer()
            self._next()
        elif len(self.queue) >= MAX_PIPELINED:
            self.flow.pause_reading()  # type: ignore[union-attr]

    # Answering ---------------------------------------------------------------------------------

    def _next(self) -> None:
        ex = self.queue.popleft()
        self.task = self.loop.create_task(self._answer(ex))

    async def _answer(self, ex: Exchange) -> None:
        ctx: RequestContext | None = None
        logger = self.state.logger
        try:
            if self.flow.write_paused:  # type: ignore[union-attr]
                # The client isn't reading our answers: don't send its next request upstream yet.
                await self.flow.drain()  # type: ignore[union-attr]
            body = ex.body_parts[0] if len(ex.body_parts) == 1 else b"".join(ex.body_parts)
            ctx = RequestContext(ex.method, ex.url, ex.parsed, body, ex.t_start, ex.raw_headers)  # type: ignore[arg-type]
            response = await self.state.gateway.handle(ctx)
        except asyncio.CancelledError:
            if logger is not None and ctx is not None:
                err = GATEWAY_SHUTDOWN if self.shut_down else CLIENT_LEFT
                logger.log_request(ctx, status=err.status if self.shut_down else 499, error=err, body=b"",
                                   content_type="", t_first_byte=0, client_left=not self.shut_down)
            return self._done(False)
        except Exception as exc:
            err = as_gateway_error(exc)
            if not isinstance(exc, GatewayError):
                log.exception("unexpected error answering %s", redact_target(ex.url)[:200])
            elapsed = time.perf_counter_ns() - ex.t_start if ex.t_start else 0
            keep_alive = ex.keep_alive and not self.closing and not err.close_connection
            request_id = ctx.request_id if ctx is not None else request_id_of_refused(ex.raw_headers)
            extra = gateway_headers(request_id, elapsed) + (ctx.extra_headers if ctx is not None else b"")
            self.transport.write(error_response(err, extra, keep_alive))  # type: ignore[union-attr]
            if logger is not None:
                if ctx is not None:
                    logger.log_request(ctx, status=err.status, error=err, body=err.body(),
                                       content_type="application/json", t_first_byte=time.perf_counter_ns(),
                                       client_left=False)
                else:
                    logger.log_rejected(ex.method, ex.url, ex.raw_headers, err, ex.t_start, request_id)
            return self._done(keep_alive)
        outcome = Outcome(logger.capture() if logger is not None and response.stream is not None else None)
        try:
            # Decided as the head goes out: a shutdown that began meanwhile closes this connection.
            keep_alive = await self._send(ex, ctx, response, ex.keep_alive and not self.closing, outcome)
        except asyncio.CancelledError:
            keep_alive = False
            if self.shut_down:
                outcome.error = GATEWAY_SHUTDOWN
            else:
                outcome.client_left = True
        except Exception:
            log.exception("unexpected error streaming %s", redact_target(ex.url)[:200])
            keep_alive = False
        finally:
            response.close()
        if logger is not None:
            logger.log_request(
                ctx, status=response.status, error=outcome.error,
                body=outcome.capture if outcome.capture is not None else (response.body or b""),
                content_type=content_type_of(response.headers), t_first_byte=outcome.t_first_byte,
                client_left=outcome.client_left,
            )
        self._done(keep_alive)

    async def _send(
        self, ex: Exchange, ctx: RequestContext, response: Response, keep_alive: bool, outcome: Outcome
    ) -> bool:
        """Write the response; returns whether the connection can carry another request.

        There are three framings: a body known in full (Content-Length, one write); a stream whose
        length the upstream announced (Content-Length, chunks written as they come); an open-ended
        stream (chunked for HTTP/1.1, close-delimited for HTTP/1.0).
        """
        transport = self.transport
        assert transport is not None
        stream = response.stream
        chunked = False
        bodyless = response.status in (204, 304) or response.status < 200
        if bodyless:
            framing = b""  # these never carry a body, nor a length that would describe one
        elif ex.method == b"HEAD" or response.content_length is not None:
            framing = b"" if response.content_length is None else b"content-length: %d\r\n" % response.content_length
        elif ex.http_10:
            framing, keep_alive = b"", False
        else:
            framing, chunked = b"transfer-encoding: chunked\r\n", True
        if not keep_alive:
            framing += b"connection: close\r\n"
        elif ex.http_10:
            framing += b"connection: keep-alive\r\n"
        head = b"".join(
            (STATUS_LINES[response.status], response.headers, gateway_headers(ctx.request_id, ctx.gateway_ns()),
             ctx.extra_headers, framing, b"\r\n")
        )
        outcome.t_first_byte = time.perf_counter_ns()
        if stream is None or ex.method == b"HEAD" or bodyless:
            transport.write(head + response.body if response.body and ex.method != b"HEAD" and not bodyless else head)
            return keep_alive
        transport.write(head)
        flow = self.flow
        assert flow is not None
        capture = outcome.capture
        try:
            async for chunk in stream:
                transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                if capture is not None:
                    capture.add(chunk)
                if flow.write_paused:
                    await self._drain_or_give_up(flow)
        except GatewayError as err:
            # The head is out, so the status can't change. An SSE stream gets a last event with the
            # error and ends cleanly; any other body is cut, which the client detects.
            outcome.error = err
            if chunked and is_event_stream(response.headers):
                transport.write(_sse_error_chunk(ctx, err) + CHUNKED_END)
                return keep_alive
            transport.abort()
            return False
        if chunked:
            transport.write(CHUNKED_END)
        return keep_alive

    async def _drain_or_give_up(self, flow: FlowControl) -> None:
        """Wait for a slow client, but not forever: one that stops reading would otherwise hold
        an upstream connection (and its slot in the pool) for as long as it likes."""
        try:
            async with asyncio.timeout(self.limits.send_timeout):
                await flow.drain()
        except TimeoutError:
            log.info("client read nothing for %gs; dropping it", self.limits.send_timeout)
            self.transport.abort()  # type: ignore[union-attr]
            raise asyncio.CancelledError from None

    def _done(self, keep_alive: bool) -> None:
        self.task = None
        if self.closed:
            return
        if not keep_alive:
            self._close()
            return
        if self.queue:  # requests parsed before any parse error are still answered, in order
            if self.flow.read_paused and not self.flow.write_paused and self._abort is None:  # type: ignore[union-attr]
                self.flow.resume_reading()  # type: ignore[union-attr]
            self._next()
            return
        if self._abort is not None:  # a parse error behind the finished responses
            self._write_abort()
            return
        ex = self.ex
        if ex is not None and ex.expect_100:
            ex.expect_100 = False
            self.transport.write(CONTINUE)  # type: ignore[union-attr]
        if self.closing:
            self._close()
        elif ex is None:
            self._set_timer(self.limits.keepalive_timeout, self._on_keepalive_timeout)
        elif ex.parsed is None:
            self._set_timer(self.limits.header_timeout, self._on_header_timeout)
        else:
            self._set_timer(self.limits.body_timeout, self._on_body_timeout)

    # Errors, timers, shutdown --------------------------------------------------------------------

    def _fail_parse(self, err: GatewayError) -> None:
        """Bad bytes: answer what came before in order, then this error, then close."""
        self._abort = err
        self.flow.pause_reading()  # type: ignore[union-attr]
        if self.task is None and not self.queue:
            self._write_abort()

    def _write_abort(self) -> None:
        err = self._abort
        assert err is not None
        ex = self.ex
        request_id = request_id_of_refused(ex.raw_headers if ex is not None else [])
        self.transport.write(error_response(err, gateway_headers(request_id, 0), keep_alive=False))  # type: ignore[union-attr]
        if self.state.logger is not None and ex is not None and ex.url:  # a request, if a cut-off one
            self.state.logger.log_rejected(ex.method, ex.url, ex.raw_headers, err, ex.t_start, request_id)
        self._close()

    def _on_header_timeout(self) -> None:
        if self.task is not None or self.queue:
            return
        if self.ex is None:
            # Not a byte of a request yet: an idle connection, closed without a word as an idle
            # keep-alive one is. A 408 here would be read as the answer to whatever request the
            # client writes next, and nginx and uvicorn close such a connection silently too.
            self._close()
            return
        # A head begun and not finished: answered and logged like any refusal at that stage (431).
        self._abort = RequestTimeout(f"request head not received within {self.limits.header_timeout:g}s")
        self._write_abort()

    def _on_body_timeout(self) -> None:
        if self.task is None and not self.queue and self.ex is not None:
            # Its head is complete, so it is a request: logged like a 413 at the same stage.
            self._abort = RequestTimeout(f"request body not received within {self.limits.body_timeout:g}s")
            self._write_abort()

    def _on_keepalive_timeout(self) -> None:
        if self.task is None and not self.queue and self.ex is None:
            self._close()

    def _set_timer(self, delay: float, callback: Callable[[], None]) -> None:
        deadline = self.loop.time() + delay
        self._deadline, self._timeout_cb = deadline, callback
        if self.timer is None or self._timer_at > deadline:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline

    def _cancel_timer(self) -> None:
        self._deadline = self._timeout_cb = None  # an armed handle stays, and finds nothing due

    def _drop_timer(self) -> None:
        self._cancel_timer()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_timer(self) -> None:
        self.timer = None
        deadline, callback = self._deadline, self._timeout_cb
        if deadline is None or callback is None:
            return
        if self.loop.time() < deadline - 0.001:  # fired for an earlier deadline: wait for this one
            self.timer = self.loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline
            return
        self._deadline = self._timeout_cb = None
        callback()

    def _close(self) -> None:
        self.closing = True
        self._drop_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def shutdown(self) -> None:
        """Graceful: an idle connection closes now; a busy one after its current response."""
        self.closing = True
        if self.task is None and not self.queue:
            self._close()

    def abort(self) -> None:
        """The end of the grace period: the response in progress is cut, and logged as ours."""
        self.shut_down = True
        if self.task is not None:
            self.task.cancel()
        if self.transport is not None:
            self.transport.abort()


def _sse_error_chunk(ctx: RequestContext, err: GatewayError) -> bytes:
    event = sse_error_event(ctx, err)
    return b"%x\r\n%b\r\n" % (len(event), event)
