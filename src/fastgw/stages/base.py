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


class Handler(Protocol):
    async def __call__(self, ctx: RequestContext) -> Response: ...
