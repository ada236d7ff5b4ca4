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
# The member to cut, matched where a memmem found '"usage"'. A raw '"' can't occur inside a JSON
# string, so these bytes are structure; whether the object is the top-level one is checked apart.
_NULL_USAGE = re.compile(rb'"usage"[ \t]*:[ \t]*null(?=[ \t]*[,}])')
_JSON_STRING = re.compile(rb'"[^"\\\r\n]*(?:\\.[^"\\\r\n]*)*"')
_BLANK = b" \t"


def _is_usage_chunk(event: bytes) -> bool:
    return b'"usage"' in event and bool(_USAGE_OBJECT.search(event)) and bool(_EMPTY_CHOICES.search(event))


def _brackets(segment: bytes) -> int:
    return segment.count(b"{") + segment.count(b"[") + segment.count(b"}") + segment.count(b"]")


def _depth_change(segment: bytes) -> int:
    """Brackets opened minus closed in ``segment``, those inside strings left out."""
    segment = _JSON_STRING.sub(b"", segment)
    return segment.count(b"{") + segment.count(b"[") - segment.count(b"}") - segment.count(b"]")


def _at_top_level(event: bytes, start: int, end: int) -> bool:
    """Whether ``event[start:end]`` lies directly inside the outer object of a one-line
    ``data: {...}`` field (a field over several lines, rare, is left as it is).

    Either side of the member tells: one bracket opened before it, or one closed after it. The
    shorter side is counted, and a side whose only bracket is the outer brace (the usual case:
    OpenAI's flat head before the member, or its flat tail after it) needs no string scan.
    """
    line = max(event.rfind(b"\n", 0, start), event.rfind(b"\r", 0, start)) + 1
    if not event.startswith(b"data:", line):
        return False
    first = line + 5
    if event.startswith(b" ", first):
        first += 1
    if not event.startswith(b"{", first):
        return False
    last = event.find(b"\n", end)
    if last < 0:
        last = len(event)
    cr = event.find(b"\r", end, last)
    if cr >= 0:
        last = cr
    before, after = event[first:start], event[end:last]
    if _brackets(before) == 1 or _brackets(after) == 1:
        return True
    if len(before) <= len(after):
        return _depth_change(before) == 1
    return _depth_change(after) == -1


def _member_span(event: bytes, start: int, end: int) -> tuple[int, int] | None:
    """The bytes to cut for the member ``event[start:end]``: with the comma before it, or as the
    first member with the comma after it, or alone; None in any other place."""
    i = start
    while i > 0 and event[i - 1] in _BLANK:
        i -= 1
    if i == 0:
        return None
    if event[i - 1] == 44:  # ","
        i -= 1
        while i > 0 and event[i - 1] in _BLANK:
            i -= 1
        return i, end
    if event[i - 1] != 123:  # "{", blanks between allowed: { "usage":null, ...
        return None
    j = end
    while j < len(event) and event[j] in _BLANK:
        j += 1
    if event.startswith(b",", j):  # first of several: "usage":null, "next"...
        j += 1
        while j < len(event) and event[j] in _BLANK:
            j += 1
        return start, j
    return start, end  # alone: {"usage":null}


def without_null_usage(event: bytes) -> bytes:
    """``event`` with its top-level ``"usage":null`` member cut out (unchanged when it has none)."""
    at = event.find(b'"usage"')  # memmem first, a regex only where it found something
    parts = []
    last = 0
    while at >= 0:
        match = _NULL_USAGE.match(event, at)
        span = _member_span(event, at, match.end()) if match is not None else None
        if span is not None and span[0] >= last and _at_top_level(event, at, match.end()):  # type: ignore[union-attr]
            parts.append(event[last:span[0]])
            last = span[1]
        at = event.find(b'"usage"', at + 7)
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


def _events(block: bytes) -> list[bytes]:
    """``block`` (whole events) cut into its events; a stray line ending after the last one is a
    piece of its own. LF framing, by far the most common, is cut with ``split`` alone."""
    if b"\r" not in block:
        events = [event + b"\n\n" for event in block.split(b"\n\n")]
        rest = events.pop()[:-2]
    else:
        events = []
        start = 0
        for match in _EVENT_END.finditer(block):
            events.append(block[start:match.end()])
            start = match.end()
        rest = block[start:]
    if rest:
        events.append(rest)
    return events


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
        if not chunk:  # nothing new: a CR awaiting its LF still awaits it
            return b""
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
        for event in _events(complete):
            kept = self._take(event, out)
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
        kept = without_null_usage(event)
        if kept is event and _is_usage_chunk(event):  # a chunk with "usage":null is not the usage chunk
            self.usage_event += event
            return False
        out.append(kept)
        return True

    def _note_cr(self, complete: bytes, kept: bool) -> None:
        if complete.endswith(b"\r"):
            self._after_cr = kept
