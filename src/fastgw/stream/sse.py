"""Server-sent events on the response path: hiding what we asked for on the client's behalf.

When the gateway adds ``stream_options.include_usage`` to a client's OpenAI-compatible stream (so
the log gets exact usage), the upstream answers differently in two ways, and the filter undoes both
so the client gets the bytes it would have got direct:
1. One extra event before ``[DONE]``: a chunk with ``"choices": []`` and a ``usage`` object. The
   filter drops that event and keeps it for the log.
2. A ``"usage":null`` member in every other chunk (OpenAI's documented behaviour in this mode).
   The filter cuts that member out of the top-level object, with the comma that joined it.

Events are split on the blank line that ends them, whatever the line endings (LF, CRLF or a bare
CR, all allowed by the SSE spec). Only a partial event at the end of a chunk is held back (until
its end arrives), so nothing that is complete is delayed.
"""

from __future__ import annotations

import re

_EMPTY_CHOICES = re.compile(rb'"choices"\s*:\s*\[\s*\]')
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
# Two line endings in a row end an event. A CR is one line ending only when no LF follows it.
_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r|\n)")
# The member to cut, in three places: after a comma (the comma goes with it), first with a comma
# after it, or alone. A raw '"' can't occur inside a JSON string, so these bytes are structure;
# whether the object is the top-level one is checked separately (_at_top_level).
_USAGE_NULL = re.compile(
    rb'[ \t]*,[ \t]*"usage"[ \t]*:[ \t]*null(?=[ \t]*[,}])'
    rb'|(?<={)"usage"[ \t]*:[ \t]*null[ \t]*,[ \t]*'
    rb'|(?<={)"usage"[ \t]*:[ \t]*null(?=[ \t]*})'
)
_JSON_STRING = re.compile(rb'"(?:[^"\\\r\n]|\\.)*"')


def _is_usage_chunk(event: bytes) -> bool:
    return b'"usage"' in event and bool(_USAGE_OBJECT.search(event)) and bool(_EMPTY_CHOICES.search(event))


def _at_top_level(event: bytes, pos: int) -> bool:
    """Whether ``pos`` lies directly inside the outer object of a one-line ``data: {...}`` field.

    Strings are taken out before the brackets are counted, so a brace in a message's text doesn't
    count. A field over several lines (rare) is left as it is.
    """
    line = max(event.rfind(b"\n", 0, pos), event.rfind(b"\r", 0, pos)) + 1
    if not event.startswith(b"data:", line):
        return False
    start = line + 5
    if event.startswith(b" ", start):
        start += 1
    if not event.startswith(b"{", start):
        return False
    prefix = _JSON_STRING.sub(b"", event[start:pos])
    return prefix.count(b"{") + prefix.count(b"[") - prefix.count(b"}") - prefix.count(b"]") == 1


def without_null_usage(event: bytes) -> bytes:
    """``event`` with its top-level ``"usage":null`` member cut out (unchanged when it has none)."""
    if b'"usage"' not in event:  # memmem: most events of a non-injected shape stop here
        return event
    parts = []
    last = 0
    for match in _USAGE_NULL.finditer(event):
        if _at_top_level(event, match.start()):
            parts.append(event[last:match.start()])
            last = match.end()
    if not parts:
        return event
    parts.append(event[last:])
    return b"".join(parts)


def _last_event_end(data: bytes) -> int:
    """Where the last complete event in ``data`` ends; -1 when there is none.

    Every blank line holds one of LF LF, LF CR or CR CR (CRLF CRLF holds LF CR). A terminator
    whose last line ending is a CR at the very end of ``data`` ends there: an LF that follows in
    the next chunk is the rest of that CRLF (``feed`` sees to it).
    """
    at = max(data.rfind(b"\n\n"), data.rfind(b"\n\r"), data.rfind(b"\r\r"))
    if at < 0:
        return -1
    end = at + 2
    if data[at + 1] == 13 and data.startswith(b"\n", end):  # CR LF: one line ending
        end += 1
    return end


class UsageChunkFilter:
    __slots__ = ("_after_cr", "_pending", "usage_event")

    def __init__(self) -> None:
        self._pending = b""
        # The last complete event ended on a CR at the end of a chunk: an LF first in the next
        # chunk completes its CRLF. True: that event was sent; False: dropped; None: neither.
        self._after_cr: bool | None = None
        self.usage_event = b""  # the usage event(s) kept from the client, for the log

    def feed(self, chunk: bytes) -> bytes:
        """The part of ``chunk`` (with any held-back start) that the client should get now."""
        head = b""
        if self._after_cr is not None and not self._pending and chunk.startswith(b"\n"):
            head, chunk = (b"\n" if self._after_cr else b""), chunk[1:]
            if self._after_cr is False:
                self.usage_event += b"\n"
        self._after_cr = None
        data = self._pending + chunk if self._pending else chunk
        cut = _last_event_end(data)
        if cut < 0:
            self._pending = data
            return head
        complete, self._pending = data[:cut], data[cut:]
        if b'"usage"' not in complete:  # a stream we didn't ask usage for: nothing to look at
            self._note_cr(complete, True)
            return head + complete
        out = [head]
        kept = True
        start = 0
        for match in _EVENT_END.finditer(complete):
            kept = self._take(complete[start:match.end()], out)
            start = match.end()
        if start < len(complete):  # a stray line ending after the last event
            out.append(complete[start:])
        self._note_cr(complete, kept)
        return b"".join(out)

    def finish(self) -> bytes:
        """Whatever is left when the stream ends. An unterminated last event is one a client
        discards (SSE), but it passes on, as direct, unless it is the usage chunk."""
        rest, self._pending = self._pending, b""
        out: list[bytes] = []
        if rest:
            self._take(rest, out)
        return b"".join(out)

    def _take(self, event: bytes, out: list[bytes]) -> bool:
        """Keep ``event`` for the log (False) or add it to ``out`` without its null usage (True)."""
        if _is_usage_chunk(event):
            self.usage_event += event
            return False
        out.append(without_null_usage(event))
        return True

    def _note_cr(self, complete: bytes, kept: bool) -> None:
        if complete.endswith(b"\r"):
            self._after_cr = kept
