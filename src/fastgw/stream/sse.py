"""Server-sent events on the response path: hiding the usage chunk we asked for on the client's behalf.

When the gateway adds ``stream_options.include_usage`` to a client's OpenAI-compatible stream (so
the log gets exact usage), the upstream answers with one extra event before ``[DONE]``: a chunk
with ``"choices": []`` and a ``usage`` object. The client didn't ask for it and its code may not
expect a chunk without choices, so the filter drops that event and keeps it for the log.

Events are split on the blank line that ends them. Only a partial event at the end of a chunk is
held back (until its end arrives), so nothing that is complete is delayed.
"""

from __future__ import annotations

import re

_EMPTY_CHOICES = re.compile(rb'"choices"\s*:\s*\[\s*\]')
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


def _is_usage_chunk(event: bytes) -> bool:
    return b'"usage"' in event and bool(_USAGE_OBJECT.search(event)) and bool(_EMPTY_CHOICES.search(event))


class UsageChunkFilter:
    __slots__ = ("_pending", "usage_event")

    def __init__(self) -> None:
        self._pending = b""
        self.usage_event = b""  # the usage event(s) kept from the client, for the log

    def feed(self, chunk: bytes) -> bytes:
        """The part of ``chunk`` (with any held-back start) that the client should get now."""
        data = self._pending + chunk if self._pending else chunk
        end = max(data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n"))
        if end < 0:
            self._pending = data
            return b""
        cut = end + (4 if data.startswith(b"\r\n\r\n", end) else 2)
        complete, self._pending = data[:cut], data[cut:]
        if b'"usage"' not in complete:  # the common case: nothing to look at
            return complete
        out = []
        for event in re.split(rb"(?<=\n\n)|(?<=\r\n\r\n)", complete):
            if event and _is_usage_chunk(event):
                self.usage_event += event
            else:
                out.append(event)
        return b"".join(out)

    def finish(self) -> bytes:
        """Whatever is left when the stream ends (an unterminated last event passes unchanged)."""
        rest, self._pending = self._pending, b""
        return rest
