"""The usage-chunk filter: drops exactly the injected usage event, wherever the chunks are cut."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fastgw.stream.sse import UsageChunkFilter

EVENTS = [
    b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}\n\n',
    b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi \\"usage\\""}}],"usage":null}\n\n',
    b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n',
]
USAGE = b'data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
DONE = b"data: [DONE]\n\n"
STREAM = b"".join(EVENTS) + USAGE + DONE


def run(chunks: list[bytes]) -> tuple[bytes, bytes]:
    f = UsageChunkFilter()
    out = b"".join(f.feed(c) for c in chunks) + f.finish()
    return out, f.usage_event


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_usage_event_removed_however_the_stream_is_cut(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)])]
    out, hidden = run(chunks)
    assert out == b"".join(EVENTS) + DONE
    assert hidden == USAGE


def test_crlf_framing_and_spaced_json() -> None:
    usage = b'data: {"choices": [ ], "usage": {"prompt_tokens": 1}}\r\n\r\n'
    first = b'data: {"choices":[{"delta":{"content":"x"}}]}\r\n\r\n'
    out, hidden = run([first + usage[:10], usage[10:] + b"data: [DONE]\r\n\r\n"])
    assert out == first + b"data: [DONE]\r\n\r\n" and hidden == usage


def test_streams_without_a_usage_chunk_pass_unchanged() -> None:
    body = b"".join(EVENTS) + DONE
    assert run([body[:7], body[7:]]) == (body, b"")
    assert run([b"data: partial-without-end"]) == (b"data: partial-without-end", b"")
