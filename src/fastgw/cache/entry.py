"""A cached response, its compact wire form, and what decides that a recorded stream is whole.

A stream is kept as its events, each exactly the bytes the upstream sent (trailing blank line
included), so a replay is byte-for-byte the original stream while the stage can still pace or
inspect it event by event.

The wire form (Redis values) is a 28-byte little-endian header then raw bytes, no pickle and no
JSON round trip for the bodies::

    magic 0xFD | kind u8 (0 no body, 1 body, 2 events) | status u16 | latency_ms u32
    | created_at_ms u64 | headers length u32 | usage length u32 | n u32 (body length, or events)
    headers | usage | body                                   (kind 1)
    headers | usage | n × u32 event lengths | events         (kind 2)

``usage`` is the usage event the gateway asked the upstream for and hid from the client (see
stages/stream_usage.py): never replayed, but a hit's log row needs it to price the cost it saved.
"""

from __future__ import annotations

import re
import struct
import time
from dataclasses import dataclass, field
from itertools import accumulate, pairwise

_HEAD = struct.Struct("<BBHIQIII")
_MAGIC = 0xFD
_NONE, _BODY, _EVENTS = 0, 1, 2
_U32 = 0xFFFFFFFF


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class CachedResponse:
    status: int
    headers: bytes  # "name: value\r\n" lines, as for stages.base.Response
    body: bytes | None = None
    events: list[bytes] | None = None  # a stream: its SSE events, concatenating to the original
    latency_ms: int = 0  # of the original response: Helicone-Cache-Latency on a hit
    created_at_ms: int = field(default_factory=_now_ms)
    usage: bytes = b""  # hidden usage event(s), for the log only

    @property
    def size(self) -> int:
        """Payload bytes: what max_entry_bytes limits and the memory bound counts."""
        n = len(self.headers) + len(self.usage)
        if self.body is not None:
            n += len(self.body)
        if self.events is not None:
            n += sum(map(len, self.events))
        return n


def encode(entry: CachedResponse) -> bytes:
    latency = min(max(int(entry.latency_ms), 0), _U32)
    magic, status, created, hlen, ulen = _MAGIC, entry.status, entry.created_at_ms, len(entry.headers), len(entry.usage)
    if entry.events is not None:
        events = entry.events
        head = _HEAD.pack(magic, _EVENTS, status, latency, created, hlen, ulen, len(events))
        lengths = struct.pack(f"<{len(events)}I", *map(len, events))
        return b"".join((head, entry.headers, entry.usage, lengths, *events))
    if entry.body is not None:
        head = _HEAD.pack(magic, _BODY, status, latency, created, hlen, ulen, len(entry.body))
        return b"".join((head, entry.headers, entry.usage, entry.body))
    return _HEAD.pack(magic, _NONE, status, latency, created, hlen, ulen, 0) + entry.headers + entry.usage


def decode(data: bytes) -> CachedResponse:
    """Raises ValueError for anything that isn't exactly one encoded entry (a stale or foreign value)."""
    if len(data) < _HEAD.size:
        raise ValueError("cache entry too short")
    magic, kind, status, latency, created, hlen, ulen, n = _HEAD.unpack_from(data)
    if magic != _MAGIC:
        raise ValueError("not a cache entry")
    pos = _HEAD.size + hlen
    headers = data[_HEAD.size:pos]
    usage = data[pos:pos + ulen]
    pos += ulen
    if pos > len(data):
        raise ValueError("cache entry truncated")
    if kind == _BODY:
        if pos + n != len(data):
            raise ValueError("cache entry body length mismatch")
        return CachedResponse(status, headers, data[pos:], None, latency, created, usage)
    if kind == _EVENTS:
        table_end = pos + 4 * n
        if table_end > len(data):
            raise ValueError("cache entry event table truncated")
        lengths = struct.unpack_from(f"<{n}I", data, pos)
        ends = list(accumulate(lengths, initial=table_end))
        if ends[-1] != len(data):
            raise ValueError("cache entry event lengths mismatch")
        return CachedResponse(status, headers, None, [data[a:b] for a, b in pairwise(ends)], latency, created, usage)
    if kind == _NONE and pos == len(data):
        return CachedResponse(status, headers, None, None, latency, created, usage)
    raise ValueError("malformed cache entry")


# An event ends at a line end followed by an empty line; a line ends at CRLF, LF or CR. A lone CR
# followed by LF is one line end, not two, hence the look-ahead.
_EVENT_END = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r)")
_LINE_END = re.compile(rb"\r\n|\n|\r")


def split_sse_events(raw: bytes, *, final: bool = False) -> tuple[list[bytes], bytes]:
    """Complete events and the partial rest.

    A CR at the very end of ``raw`` might be the first half of a CRLF still to come, so an event
    ending there is held back unless ``final``: that keeps the split the same wherever the
    stream happened to be cut into chunks.
    """
    events = []
    start = 0
    size = len(raw)
    for m in _EVENT_END.finditer(raw):
        end = m.end()
        if end == size and not final and raw[end - 1] == 13:
            break
        events.append(raw[start:end])
        start = end
    return events, raw[start:]


def _fields(event: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    for line in _LINE_END.split(event):
        if not line or line[0] == 58:  # empty, or a ":" comment
            continue
        name, _, value = line.partition(b":")
        out.append((name, value[1:] if value[:1] == b" " else value))
    return out


def stream_is_complete(events: list[bytes], format_name: str) -> bool:
    """Whether the stream reached its provider's end marker, so it's safe to replay.

    Anthropic: an ``event: message_stop``. Everything else is taken as OpenAI-compatible: the last
    event that carries anything is ``data: [DONE]``, or ``event: response.completed`` (the
    Responses API, which sends no [DONE]). An unknown format that has neither is never stored,
    which costs a cache miss rather than a broken replay.
    """
    if format_name == "anthropic":
        for event in reversed(events):
            if b"message_stop" in event and (b"event", b"message_stop") in _fields(event):
                return True
        return False
    for event in reversed(events):
        fields = _fields(event)
        if not fields:
            continue
        if (b"event", b"response.completed") in fields:
            return True
        return b"\n".join(v for n, v in fields if n == b"data").strip() == b"[DONE]"
    return False


class StreamRecorder:
    """Collects a streamed response as it passes to the client, for storing once it ends well.

    Chunks are only appended while recording; the split into events happens once, in ``finish``,
    so recording costs a list append per chunk. Past ``max_bytes`` the recorder drops what it has
    and ignores the rest: such a response isn't stored anyway.
    """

    __slots__ = ("_chunks", "gave_up", "max_bytes", "size")

    def __init__(self, max_bytes: int) -> None:
        self._chunks: list[bytes] = []
        self.size = 0
        self.max_bytes = max_bytes
        self.gave_up = False

    def feed(self, chunk: bytes) -> bool:
        """False once the stream is too large to keep (further chunks are ignored)."""
        if self.gave_up:
            return False
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.gave_up = True
            self._chunks = []
            return False
        self._chunks.append(chunk)
        return True

    def body(self) -> bytes | None:
        """The recording whole, for a body that is not an event stream; None if it grew too large."""
        chunks, self._chunks = self._chunks, []
        return None if self.gave_up else b"".join(chunks)

    def finish(self, format_name: str) -> list[bytes] | None:
        """The events to store, or None: too large, cut off, or not ended by the format's marker.

        Bytes after the last blank line are allowed only if they are more line ends (they join
        the last event, so a replay is still the original); anything else means a cut-off event.
        """
        chunks, self._chunks = self._chunks, []
        if self.gave_up:
            return None
        events, rest = split_sse_events(b"".join(chunks), final=True)
        if not events:
            return None
        if rest:
            if rest.strip(b"\r\n"):
                return None
            events[-1] += rest
        return events if stream_is_complete(events, format_name) else None
