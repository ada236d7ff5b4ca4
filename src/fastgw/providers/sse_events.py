"""Incremental server-sent-events parsing for translated streams.

Events are cut on the blank line that ends them, so a translated stream emits each event as soon
as its last byte has arrived; a partial event waits in ``_pending`` for the rest.
"""

from __future__ import annotations


class SSEParser:
    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        """The complete events so far, as (event name or "", data joined by newlines)."""
        data = self._pending + chunk if self._pending else chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        events = []
        while True:
            end = data.find(b"\n\n")
            if end < 0:
                break
            event = _parse(data[:end])
            if event is not None:
                events.append(event)
            data = data[end + 2:]
        self._pending = data
        return events

    def finish(self) -> list[tuple[str, bytes]]:
        """An unterminated last event, if the stream ended without its blank line."""
        rest, self._pending = self._pending, b""
        event = _parse(rest.strip(b"\n")) if rest.strip() else None
        return [event] if event is not None else []


def _parse(block: bytes) -> tuple[str, bytes] | None:
    name = ""
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode("latin-1")
    if not data and not name:
        return None  # a comment or keep-alive
    return name, b"\n".join(data)
