"""AWS event-stream framing (``application/vnd.amazon.eventstream``), decoded as bytes arrive.

Bedrock's ConverseStream and InvokeModelWithResponseStream answer in binary messages rather than
SSE. Each message is::

    total length (u32) | headers length (u32) | prelude CRC32 (u32)
    headers | payload | message CRC32 (u32, over everything before it)

all big-endian. A header is a 1-byte name length, the name, a 1-byte value type and the value;
Bedrock only sends strings (type 7: u16 length + UTF-8), but every type is parsed so that an
unexpected one does not desynchronise the stream. The decoder keeps the bytes of an unfinished
message and hands out each message the moment its last byte is in, so a translated stream is not
delayed. A bad CRC or an impossible length raises ``EventStreamError``: after that the framing
cannot be trusted, so the stream ends with an error rather than with guessed data.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")
MAX_MESSAGE = 16 * 1024 * 1024  # the format's limit: anything longer is a corrupt prelude
_MIN_MESSAGE = 16  # prelude and message CRC with no headers and no payload
# value type -> fixed size (None: u16 length-prefixed)
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (CRC mismatch, bad length or header)."""


@dataclass(frozen=True, slots=True)
class Message:
    headers: dict[str, object]  # strings for type 7; bytes, ints or bools for the others
    payload: bytes

    @property
    def event_type(self) -> str:
        """``:event-type`` for events, ``:exception-type`` for exceptions, else ""."""
        value = self.headers.get(":event-type") or self.headers.get(":exception-type") or ""
        return value if isinstance(value, str) else ""

    @property
    def is_exception(self) -> bool:
        return self.headers.get(":message-type") in ("exception", "error")


class Decoder:
    """Feed it any slices of the stream; it returns the messages completed so far."""

    __slots__ = ("_buf", "_error")

    def __init__(self) -> None:
        self._buf = bytearray()
        # Set when good messages came in the same feed as a broken one: those are handed out
        # first, and the error is raised by the next feed or close.
        self._error: EventStreamError | None = None

    def feed(self, chunk: bytes) -> list[Message]:
        if self._error is not None:
            raise self._error
        out: list[Message] = []
        try:
            self._decode(chunk, out)
        except EventStreamError as exc:
            if not out:
                raise
            self._error = exc
        return out

    def close(self) -> None:
        """The stream ended: raise if it was broken, or cut inside a message."""
        if self._error is not None:
            raise self._error
        if self._buf:
            raise EventStreamError(f"the event stream ended inside a message ({len(self._buf)} bytes of it)")

    def _decode(self, chunk: bytes, out: list[Message]) -> None:
        buf = self._buf
        buf += chunk
        while len(buf) >= 12:
            total, headers_len, prelude_crc = _PRELUDE.unpack_from(buf)
            if zlib.crc32(memoryview(buf)[:8]) != prelude_crc:
                raise EventStreamError("event-stream prelude CRC mismatch")
            if not _MIN_MESSAGE <= total <= MAX_MESSAGE or headers_len > total - _MIN_MESSAGE:
                raise EventStreamError(f"event-stream message length {total} (headers {headers_len}) is invalid")
            if len(buf) < total:
                break
            view = memoryview(buf)[:total]
            (message_crc,) = _U32.unpack_from(view, total - 4)
            if zlib.crc32(view[:-4]) != message_crc:
                raise EventStreamError("event-stream message CRC mismatch")
            headers = _parse_headers(bytes(view[12:12 + headers_len]))
            payload = bytes(view[12 + headers_len:total - 4])
            view.release()
            del buf[:total]
            out.append(Message(headers, payload))

    @property
    def pending(self) -> int:
        """Bytes of a message not yet complete (non-zero at the end of a stream: it was cut)."""
        return len(self._buf)


def _parse_headers(data: bytes) -> dict[str, object]:
    headers: dict[str, object] = {}
    i, end = 0, len(data)
    try:
        while i < end:
            n = data[i]
            name = data[i + 1:i + 1 + n].decode("utf-8")
            i += 1 + n
            kind = data[i]
            i += 1
            size = _FIXED.get(kind)
            if size is None:
                if kind not in (6, 7):
                    raise EventStreamError(f"event-stream header {name!r} has unknown type {kind}")
                (size,) = struct.unpack_from(">H", data, i)
                i += 2
                raw = data[i:i + size]
                value: object = raw.decode("utf-8") if kind == 7 else raw
            elif kind in (0, 1):
                value = kind == 0
            else:
                raw = data[i:i + size]
                value = raw if kind == 9 else int.from_bytes(raw, "big", signed=True)
            if i + size > end:
                raise EventStreamError("event-stream header runs past its block")
            i += size
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"event-stream headers are malformed: {exc}") from None
    return headers


def encode(headers: dict[str, str], payload: bytes) -> bytes:
    """One message with string headers (what Bedrock sends); the mock upstream and tests use it."""
    block = b"".join(
        bytes([len(k)]) + k + b"\x07" + struct.pack(">H", len(v)) + v
        for k, v in ((k.encode(), v.encode()) for k, v in headers.items())
    )
    total = 12 + len(block) + len(payload) + 4
    prelude = struct.pack(">II", total, len(block))
    prelude += _U32.pack(zlib.crc32(prelude))
    message = prelude + block + payload
    return message + _U32.pack(zlib.crc32(message))


def event(event_type: str, payload: bytes) -> bytes:
    return encode({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}, payload)


def exception(exception_type: str, payload: bytes) -> bytes:
    return encode({":exception-type": exception_type, ":content-type": "application/json",
                   ":message-type": "exception"}, payload)
