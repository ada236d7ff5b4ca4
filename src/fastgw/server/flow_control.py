"""Back-pressure on one client connection, in one place that every read and write path calls.

Both calls are idempotent, so callers never track whether they already paused.
"""

from __future__ import annotations

import asyncio


class FlowControl:
    __slots__ = ("_transport", "read_paused", "write_paused", "_drain_waiter")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    async def drain(self) -> None:
        """Wait until the client has read enough of what we wrote (or has gone)."""
        if self.write_paused:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            await self._drain_waiter

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._drain_waiter = None
