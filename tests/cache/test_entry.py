"""Entries survive their wire form exactly, and recorded streams split and complete correctly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw.cache import (
    CachedResponse,
    StreamRecorder,
    decode,
    encode,
    split_sse_events,
    stream_is_complete,
)

SEPARATORS = [b"\n", b"\r\n", b"\r"]

headers_st = st.lists(
    st.tuples(st.from_regex(rb"[a-z][a-z0-9-]{0,15}", fullmatch=True), st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))),
    max_size=6,
).map(lambda pairs: b"".join(n + b": " + v + b"\r\n" for n, v in pairs))

entries = st.builds(
    CachedResponse,
    status=st.integers(100, 599),
    headers=headers_st,
    body=st.one_of(st.none(), st.binary(max_size=2000)),
    events=st.one_of(st.none(), st.lists(st.binary(max_size=200), max_size=30)),
    latency_ms=st.integers(0, 2**32 - 1),
    created_at_ms=st.integers(0, 2**63),
    usage=st.binary(max_size=300),
)


@given(entries)
def test_encode_decode_round_trip(entry: CachedResponse) -> None:
    if entry.events is not None:
        entry.body = None  # a response is one or the other
    back = decode(encode(entry))
    assert back == entry
    assert type(back.headers) is bytes and (back.body is None or type(back.body) is bytes)


def test_encode_keeps_a_body_less_response() -> None:
    e = CachedResponse(204, b"x-a: 1\r\n", None, None, 12, 5)
    assert decode(encode(e)) == e


@given(entries, st.data())
def test_truncated_or_padded_entries_are_refused(entry: CachedResponse, data: st.DataObject) -> None:
    if entry.events is not None:
        entry.body = None
    raw = encode(entry)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(ValueError):
        decode(raw[:cut])
    with pytest.raises(ValueError):
        decode(raw + b"x")


def test_foreign_bytes_are_refused() -> None:
    with pytest.raises(ValueError):
        decode(b"{" + b"\0" * 40)


# -- SSE splitting -------------------------------------------------------------------------------

@pytest.mark.parametrize("sep", SEPARATORS)
def test_split_each_separator(sep: bytes) -> None:
    e1 = b"event: a" + sep + b"data: 1" + sep + sep
    e2 = b"data: 2" + sep + sep
    events, rest = split_sse_events(e1 + e2 + b"data: par")
    assert events == [e1, e2]
    assert rest == b"data: par"


def test_lone_cr_then_lf_is_one_line_end() -> None:
    assert split_sse_events(b"data: 1\r\ndata: 2\r\n") == ([], b"data: 1\r\ndata: 2\r\n")
    assert split_sse_events(b"data: 1\r\n\r\nx") == ([b"data: 1\r\n\r\n"], b"x")


def test_trailing_cr_waits_for_a_possible_lf() -> None:
    assert split_sse_events(b"data: 1\r\r") == ([], b"data: 1\r\r")
    assert split_sse_events(b"data: 1\r\r", final=True) == ([b"data: 1\r\r"], b"")
    assert split_sse_events(b"data: 1\r\r\n") == ([b"data: 1\r\r\n"], b"")
    assert split_sse_events(b"data: 1\n\r") == ([], b"data: 1\n\r")


line_st = st.from_regex(rb"(data|event|id|: comment|retry): [ -~]{0,30}", fullmatch=True)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A stream of events with any mix of line ends, and where its events end."""
    events = []
    for _ in range(draw(st.integers(0, 12))):
        lines = draw(st.lists(line_st, min_size=1, max_size=4))
        seps = [draw(st.sampled_from(SEPARATORS)) for _ in range(len(lines))]
        # The blank line: after a CR, an LF would only complete a CRLF, not end the event.
        blank = draw(st.sampled_from(SEPARATORS[1:] if seps[-1] == b"\r" else SEPARATORS))
        events.append(b"".join(line + sep for line, sep in zip(lines, seps)) + blank)
    return b"".join(events), events


@settings(max_examples=300)
@given(streams(), st.data())
def test_split_is_the_same_wherever_the_stream_is_cut(stream: tuple[bytes, list[bytes]], data: st.DataObject) -> None:
    raw, whole = stream
    assert split_sse_events(raw, final=True) == (whole, b"")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=10)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]
    got: list[bytes] = []
    pending = b""
    for piece in pieces:
        events, pending = split_sse_events(pending + piece)
        got += events
    events, pending = split_sse_events(pending, final=True)
    got += events
    assert pending == b""
    assert got == whole


@settings(max_examples=300)
@given(streams(), st.data(), st.sampled_from(SEPARATORS))
def test_recorder_replays_the_original_bytes(stream: tuple[bytes, list[bytes]], data: st.DataObject, sep: bytes) -> None:
    body, _ = stream
    raw = body + b"data: [DONE]" + sep + sep
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=10)))
    rec = StreamRecorder(max_bytes=len(raw))
    for a, b in zip([0, *cuts], [*cuts, len(raw)]):
        assert rec.feed(raw[a:b])
    events = rec.finish("openai")
    assert events is not None
    assert b"".join(events) == raw
    assert events[-1].startswith(b"data: [DONE]")


# -- completeness --------------------------------------------------------------------------------

OPENAI = [
    b'data: {"id":"1","choices":[{"delta":{"content":"Hi"}}]}\n\n',
    b'data: {"id":"1","choices":[],"usage":{"total_tokens":3}}\n\n',
    b"data: [DONE]\n\n",
]
RESPONSES = [
    b'event: response.created\ndata: {"type":"response.created"}\n\n',
    b'event: response.completed\ndata: {"type":"response.completed"}\n\n',
]
ANTHROPIC = [
    b'event: message_start\ndata: {"type":"message_start"}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"Hi"}}\n\n',
    b'event: message_delta\ndata: {"type":"message_delta"}\n\n',
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
]


def test_complete_streams() -> None:
    assert stream_is_complete(OPENAI, "openai")
    assert stream_is_complete([e.replace(b"\n", b"\r\n") for e in OPENAI], "openai")
    assert stream_is_complete(OPENAI + [b": keep-alive\n\n"], "openai")
    assert stream_is_complete([b"data:[DONE]\n\n"], "openai")
    assert stream_is_complete(RESPONSES, "openai")
    assert stream_is_complete(ANTHROPIC, "anthropic")
    assert stream_is_complete(ANTHROPIC + [b"event: ping\ndata: {}\n\n"], "anthropic")


def test_cut_off_streams() -> None:
    assert not stream_is_complete([], "openai")
    assert not stream_is_complete(OPENAI[:-1], "openai")
    assert not stream_is_complete(OPENAI[:1] + [b"data: [DONE]\n\n"] + OPENAI[:1], "openai")
    assert not stream_is_complete(RESPONSES[:1], "openai")
    assert not stream_is_complete(ANTHROPIC[:-1], "anthropic")
    assert not stream_is_complete(OPENAI, "anthropic")
    assert not stream_is_complete([b'data: {"type":"message_stop"}\n\n'], "anthropic")


@pytest.mark.parametrize("fmt, events", [("openai", OPENAI), ("anthropic", ANTHROPIC)])
def test_recorder_refuses_every_cut_off_prefix(fmt: str, events: list[bytes]) -> None:
    raw = b"".join(events)
    for cut in range(len(raw)):
        rec = StreamRecorder(max_bytes=1 << 20)
        rec.feed(raw[:cut])
        assert rec.finish(fmt) is None, raw[:cut]
    rec = StreamRecorder(max_bytes=1 << 20)
    rec.feed(raw)
    assert rec.finish(fmt) == events


def test_recorder_keeps_trailing_blank_lines_and_refuses_a_partial_tail() -> None:
    rec = StreamRecorder(1 << 20)
    rec.feed(b"".join(OPENAI) + b"\n")
    got = rec.finish("openai")
    assert got is not None and b"".join(got) == b"".join(OPENAI) + b"\n"
    rec = StreamRecorder(1 << 20)
    rec.feed(b"".join(OPENAI) + b"data: {")
    assert rec.finish("openai") is None


def test_recorder_gives_up_past_max_bytes() -> None:
    raw = b"".join(OPENAI)
    rec = StreamRecorder(max_bytes=len(raw) - 1)
    assert rec.feed(raw[:10])
    assert not rec.feed(raw[10:])
    assert not rec.feed(b"more")
    assert rec.gave_up
    assert rec.finish("openai") is None
    rec = StreamRecorder(max_bytes=len(raw))
    assert rec.feed(raw)
    assert rec.finish("openai") == OPENAI
