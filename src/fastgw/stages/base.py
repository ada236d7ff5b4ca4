"""What every stage shares: the Handler protocol and the Response it returns."""

from __future__ import annotations

from typing import TYPE_CHECKING, AsyncIterator, Protocol

if TYPE_CHECKING:
    from fastgw.context import RequestContext


class BodyStream(Protocol):
    """A body still arriving: its chunks, and ``close`` to release what carries them."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class Response:
    """A response on its way to the client.

    At most one of ``body`` (known in full) and ``stream`` (still arriving) is set; neither is set
    for an answer to HEAD. ``headers`` is
    a pre-serialised block of ``name: value\\r\\n`` lines without framing headers: the server
    writes Content-Length or Transfer-Encoding itself. ``close`` must be called once the body has
    been sent or abandoned; it hands the upstream connection back or closes it.
    """

    __slots__ = ("status", "headers", "content_length", "body", "stream")

    def __init__(
        self,
        status: int,
        headers: bytes,
        body: bytes | None = None,
        stream: BodyStream | None = None,
        content_length: int | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.stream = stream
        # For a stream: the length the upstream announced, or None for an open-ended body.
        self.content_length = len(body) if body is not None else content_length

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


class Rewriter(Protocol):
    """Rewrites a stream's bytes: ``feed`` returns what is ready to go out (maybe nothing), ``finish``
    the rest at the end; ``usage_event`` is the usage it held back from the client, for the log."""

    usage_event: bytes

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class RewrittenStream:
    """An upstream body rewritten on its way to the client (translated to OpenAI chunks, or with an
    injected usage chunk taken out), each piece sent as soon as the rewriter has it; closes like the
    stream it wraps. What was held back is left in ``ctx.hidden_usage``, ended or closed."""

    __slots__ = ("_ctx", "_done", "_rewriter", "_stream")

    def __init__(self, stream: BodyStream, rewriter: Rewriter, ctx: RequestContext) -> None:
        self._stream = stream
        self._rewriter = rewriter
        self._ctx = ctx
        self._done = False

    def __aiter__(self) -> RewrittenStream:
        return self

    async def __anext__(self) -> bytes:
        while not self._done:
            try:
                chunk = await self._stream.__anext__()  # type: ignore[attr-defined]
            except StopAsyncIteration:
                self._done = True
                out = self._rewriter.finish()
                self._ctx.hidden_usage = self._rewriter.usage_event
                if out:
                    return out
                break
            out = self._rewriter.feed(chunk)
            if out:  # never an empty chunk: in chunked framing that would end the body
                return out
        raise StopAsyncIteration

    def close(self) -> None:
        self._ctx.hidden_usage = self._rewriter.usage_event
        self._stream.close()  # type: ignore[attr-defined]


class TappedStream:
    """A body stream passed through unchanged while a stage watches it (records it, meters it).

    Subclasses override ``seen`` (each chunk), ``ended`` (the stream ran to its end) and
    ``abandoned`` (it failed, or the response was closed before its end); each hook runs once per
    event and ``ended``/``abandoned`` at most once between them.
    """

    __slots__ = ("_over", "_stream")

    def __init__(self, stream: BodyStream) -> None:
        self._stream = stream
        self._over = False

    def __aiter__(self) -> TappedStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._stream.__anext__()  # type: ignore[attr-defined]
        except StopAsyncIteration:
            self._finish(True)
            raise
        except BaseException:
            self._finish(False)
            raise
        self.seen(chunk)
        return chunk

    def close(self) -> None:
        self._finish(False)
        self._stream.close()

    def _finish(self, whole: bool) -> None:
        if not self._over:
            self._over = True
            self.ended() if whole else self.abandoned()

    def seen(self, chunk: bytes) -> None:
        pass

    def ended(self) -> None:
        pass

    def abandoned(self) -> None:
        pass


class Handler(Protocol):
    async def __call__(self, ctx: RequestContext) -> Response: ...
