"""The usage-chunk filter: drops exactly the injected usage event and the ``"usage":null`` members
include_usage adds, wherever the chunks are cut and whatever the line endings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import pytest

from fastgw.stream.sse import UsageChunkFilter, without_null_usage

EVENTS = [
    b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}\n\n',
    b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi \\"usage\\""}}],"usage":null}\n\n',
    b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n',
]
USAGE = b'data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
DONE = b"data: [DONE]\n\n"
STREAM = b"".join(EVENTS) + USAGE + DONE
DIRECT = b"".join(EVENTS).replace(b',"usage":null', b"") + DONE  # what the client gets without include_usage


def run(chunks: list[bytes]) -> tuple[bytes, bytes]:
    f = UsageChunkFilter()
    out = b"".join(f.feed(c) for c in chunks) + f.finish()
    return out, f.usage_event


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_usage_event_removed_however_the_stream_is_cut(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)])]
    out, hidden = run(chunks)
    assert out == DIRECT
    assert hidden == USAGE


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM) * 2), max_size=12))
def test_every_line_ending_however_the_stream_is_cut(newline: bytes, cuts: list[int]) -> None:
    """SSE allows LF, CRLF and a bare CR; a cut between the CR and LF of a CRLF loses nothing."""
    stream, direct, usage = (x.replace(b"\n", newline) for x in (STREAM, DIRECT, USAGE))
    points = sorted({c for c in cuts if c <= len(stream)})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    assert run(chunks) == (direct, usage)


def test_bare_cr_events_are_not_held_back() -> None:
    f = UsageChunkFilter()
    assert f.feed(EVENTS[0].replace(b"\n", b"\r")) == DIRECT.split(b"\n\n")[0] + b"\r\r"


def test_crlf_framing_and_spaced_json() -> None:
    usage = b'data: {"choices": [ ], "usage": {"prompt_tokens": 1}}\r\n\r\n'
    first = b'data: {"choices":[{"delta":{"content":"x"}}]}\r\n\r\n'
    out, hidden = run([first + usage[:10], usage[10:] + b"data: [DONE]\r\n\r\n"])
    assert out == first + b"data: [DONE]\r\n\r\n" and hidden == usage


def test_streams_without_a_usage_chunk_pass_unchanged() -> None:
    body = DIRECT
    assert run([body[:7], body[7:]]) == (body, b"")
    assert run([b"data: partial-without-end"]) == (b"data: partial-without-end", b"")


@pytest.mark.parametrize(("event", "expected"), [
    (b'data: {"a":1,"usage":null,"b":2}\n\n', b'data: {"a":1,"b":2}\n\n'),  # the mock's place
    (b'data: {"a":[1],"usage":null}\n\n', b'data: {"a":[1]}\n\n'),  # OpenAI's place, last
    (b'data: {"usage":null,"a":1}\n\n', b'data: {"a":1}\n\n'),
    (b'data: {"usage":null}\n\n', b"data: {}\n\n"),
    (b'data: { "usage":null, "a":1}\n\n', b'data: { "a":1}\n\n'),  # a review's: a blank after the brace
    (b'data:{"a":1 , "usage" : null }\n\n', b'data:{"a":1 }\n\n'),
    (b'data: {"a":"x\\\\","usage":null}\n\n', b'data: {"a":"x\\\\"}\n\n'),  # an escaped backslash ends the string
    # Left alone: nested objects, text that only looks like the member, a comment, a usage object.
    (b'data: {"a":{"usage":null},"b":[{"usage":null}]}\n\n', None),
    (b'data: {"a":"{\\",\\"usage\\":null"}\n\n', None),
    (b'data: {"a":"}]","b":{"usage":null}}\n\n', None),
    (b': {"usage":null}\n\n', None),
    (b'data: {"usage":nullx}\n\n', None),
    (b'data: {"choices":[],"usage":{"total_tokens":1}}\n\n', None),
])
def test_only_the_top_level_null_usage_member_is_cut(event: bytes, expected: bytes | None) -> None:
    assert without_null_usage(event) == (event if expected is None else expected)


def test_an_empty_chunk_between_a_cr_and_its_lf_changes_nothing() -> None:
    """A review's: an empty feed forgot the CR still waiting for its LF."""
    stream, direct, usage = (x.replace(b"\n", b"\r\n") for x in (STREAM, DIRECT, USAGE))
    for cut in (stream.index(usage) + len(usage) - 1, stream.index(usage) - 1):
        assert run([stream[:cut], b"", stream[cut:]]) == (direct, usage), cut


def test_a_cut_between_the_cr_and_lf_after_the_usage_chunk_loses_nothing() -> None:
    stream, direct, usage = (x.replace(b"\n", b"\r\n") for x in (STREAM, DIRECT, USAGE))
    cut = stream.index(usage) + len(usage) - 1  # the usage event's last CR is in, its LF is not
    assert run([stream[:cut], stream[cut:]]) == (direct, usage)
    before = stream.index(usage) - 1  # the same for a kept event, just before the usage chunk
    assert run([stream[:before], stream[before:]]) == (direct, usage)
