"""The event-stream codec: round trips, frames split anywhere, and corruption caught cleanly."""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from fastgw.providers import eventstream as es


def _stream() -> tuple[bytes, list[tuple[str, bytes]]]:
    events = [("messageStart", b'{"role":"assistant"}'),
              ("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"text":"Hello \xc3\xa9"}}'),
              ("contentBlockStop", b'{"contentBlockIndex":0}'),
              ("messageStop", b'{"stopReason":"end_turn"}'),
              ("metadata", b'{"usage":{"inputTokens":3,"outputTokens":2,"totalTokens":5}}'),
              ("empty", b"")]
    return b"".join(es.event(name, payload) for name, payload in events), events


def test_round_trip_whole() -> None:
    data, events = _stream()
    msgs = es.Decoder().feed(data)
    assert [(m.event_type, m.payload) for m in msgs] == events
    assert msgs[0].headers == {":event-type": "messageStart", ":content-type": "application/json",
                               ":message-type": "event"}
    assert not msgs[0].is_exception


@pytest.mark.parametrize("seed", range(20))
def test_split_at_arbitrary_boundaries(seed: int) -> None:
    data, events = _stream()
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 30)))
    decoder = es.Decoder()
    got = []
    for a, b in zip([0, *cuts], [*cuts, len(data)]):
        got += decoder.feed(data[a:b])
    assert [(m.event_type, m.payload) for m in got] == events
    assert decoder.pending == 0


def test_one_byte_at_a_time_emits_each_message_on_its_last_byte() -> None:
    one = es.event("contentBlockDelta", b'{"x":1}')
    decoder = es.Decoder()
    for i in range(len(one) - 1):
        assert decoder.feed(one[i:i + 1]) == []
    assert [m.payload for m in decoder.feed(one[-1:])] == [b'{"x":1}']


def test_bad_message_crc_is_a_clean_error() -> None:
    msg = bytearray(es.event("contentBlockDelta", b'{"x":1}'))
    msg[-6] ^= 0xFF  # a payload byte
    with pytest.raises(es.EventStreamError, match="message CRC"):
        es.Decoder().feed(bytes(msg))


def test_bad_prelude_crc_is_caught_before_waiting_for_a_bogus_length() -> None:
    msg = bytearray(es.event("x", b"{}"))
    msg[2] = 0x7F  # total length now claims ~8 MB
    with pytest.raises(es.EventStreamError, match="prelude CRC"):
        es.Decoder().feed(bytes(msg[:12]))


def test_impossible_length_with_a_valid_prelude_crc() -> None:
    prelude = struct.pack(">II", 8, 0)
    with pytest.raises(es.EventStreamError, match="length"):
        es.Decoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))


def test_exception_message_and_other_header_types() -> None:
    exc = es.Decoder().feed(es.exception("throttlingException", b'{"message":"slow down"}'))[0]
    assert exc.is_exception and exc.event_type == "throttlingException"
    # a hand-built message with bool, int32 and bytes headers
    block = (b"\x01a\x00" + b"\x01b\x04" + struct.pack(">i", -5) + b"\x01c\x06" + struct.pack(">H", 2) + b"\x00\x01")
    total = 12 + len(block) + 4
    prelude = struct.pack(">II", total, len(block))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + block
    msg = es.Decoder().feed(body + struct.pack(">I", zlib.crc32(body)))[0]
    assert msg.headers == {"a": True, "b": -5, "c": b"\x00\x01"} and msg.payload == b""


def test_a_cut_stream_leaves_pending_bytes() -> None:
    data, _ = _stream()
    decoder = es.Decoder()
    decoder.feed(data[:-3])
    assert decoder.pending > 0


def test_good_messages_before_a_bad_one_come_out_first() -> None:
    good = es.event("a", b"{}") + es.event("b", b"{}")
    bad = bytearray(es.event("c", b'{"x":1}'))
    bad[-6] ^= 0xFF
    decoder = es.Decoder()
    assert [m.event_type for m in decoder.feed(good + bytes(bad) + es.event("d", b"{}"))] == ["a", "b"]
    with pytest.raises(es.EventStreamError, match="message CRC"):
        decoder.feed(b"")
    with pytest.raises(es.EventStreamError, match="message CRC"):
        decoder.close()


def test_close_reports_a_stream_cut_inside_a_message() -> None:
    decoder = es.Decoder()
    decoder.feed(es.event("a", b"{}")[:-1])
    with pytest.raises(es.EventStreamError, match="ended inside a message"):
        decoder.close()
    es.Decoder().close()  # nothing pending: fine
