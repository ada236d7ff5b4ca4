"""Usage extraction from real-shaped provider responses (tests/fixtures/usage, hand-written to the wire formats).

The *_cut fixtures are a head and a tail of a long stream joined with the middle removed, each cut
falling inside an event, as the exporter may receive them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgw.requestlog.usage as usage_mod
from fastgw.requestlog.usage import Usage, extract_usage, iter_sse, stream_content

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "usage"


def body(name: str) -> bytes:
    return (FIX / name).read_bytes()


CASES = [
    # fixture, fmt, path, stream, expected
    ("openai_chat.json", "openai", "/v1/chat/completions", False,
     Usage(prompt_tokens=2006, completion_tokens=300, cache_read_tokens=1920, model="gpt-4o-2024-08-06")),
    ("openai_chat_stream.sse", "openai", "/v1/chat/completions", True,
     Usage(prompt_tokens=14, completion_tokens=210, reasoning_tokens=192, model="o4-mini-2025-04-16")),
    ("openai_chat_stream_tools.sse", "openai", "/v1/chat/completions", True,
     Usage(prompt_tokens=81, completion_tokens=15, model="gpt-4o-mini-2024-07-18")),
    ("openai_chat_stream_cut.sse", "openai", "/v1/chat/completions", True,
     Usage(prompt_tokens=57, completion_tokens=400, model="gpt-4o-mini-2024-07-18")),
    ("openai_responses.json", "openai", "/v1/responses", False,
     Usage(prompt_tokens=1500, completion_tokens=900, cache_read_tokens=1024, reasoning_tokens=640,
           model="o4-mini-2025-04-16")),
    ("openai_responses_stream.sse", "openai", "/v1/responses", True,
     Usage(prompt_tokens=37, completion_tokens=11, model="gpt-4.1-2025-04-14")),
    ("openai_responses_stream_cut.sse", "openai", "/v1/responses", True,
     Usage(prompt_tokens=37, completion_tokens=11, model="gpt-4.1-2025-04-14")),
    ("openai_embeddings.json", "openai", "/v1/embeddings", False,
     Usage(prompt_tokens=8, completion_tokens=0, model="text-embedding-3-small")),
    # Anthropic: prompt_tokens = input + cache_read + cache_write
    ("anthropic_message.json", "anthropic", "/v1/messages", False,
     Usage(prompt_tokens=21 + 188086, completion_tokens=393, cache_read_tokens=188086,
           model="claude-sonnet-4-5-20250929")),
    ("anthropic_stream.sse", "anthropic", "/v1/messages", True,
     Usage(prompt_tokens=12 + 20480 + 1536, completion_tokens=87, cache_read_tokens=20480,
           cache_write_tokens=1536, model="claude-sonnet-4-5-20250929")),
    ("anthropic_stream_thinking_1h.sse", "anthropic", "/v1/messages", True,
     Usage(prompt_tokens=2048 + 3000, completion_tokens=312, cache_write_tokens=3000,
           cache_write_1h_tokens=2000, model="claude-opus-4-1-20250805")),
    ("anthropic_stream_cut.sse", "anthropic", "/v1/messages", True,
     Usage(prompt_tokens=320 + 9000, completion_tokens=1187, cache_read_tokens=9000,
           model="claude-haiku-4-5-20251001")),
    # Gemini: completion = candidates + thoughts
    ("gemini.json", "gemini", "/v1beta/models/gemini-2.5-pro:generateContent", False,
     Usage(prompt_tokens=250112, completion_tokens=820 + 1000, cache_read_tokens=200000,
           reasoning_tokens=1000, model="gemini-2.5-pro")),
    ("gemini_stream.sse", "gemini", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", True,
     Usage(prompt_tokens=9, completion_tokens=41 + 962, reasoning_tokens=962, model="gemini-2.5-flash")),
    ("gemini_stream_array.json", "gemini", "/v1beta/models/gemini-2.0-flash:streamGenerateContent", True,
     Usage(prompt_tokens=5, completion_tokens=10, model="gemini-2.0-flash")),
    # OpenAI-compatible providers
    ("xai_chat.json", "openai", "/v1/chat/completions", False,  # reasoning reported outside completion
     Usage(prompt_tokens=32, completion_tokens=9 + 94, cache_read_tokens=6, reasoning_tokens=94,
           model="grok-3-mini")),
    ("deepseek_chat.json", "openai", "/chat/completions", False,
     Usage(prompt_tokens=1200, completion_tokens=80, cache_read_tokens=1152, model="deepseek-chat")),
    ("deepseek_reasoner.json", "openai", "/chat/completions", False,  # reasoning already inside completion
     Usage(prompt_tokens=20, completion_tokens=500, reasoning_tokens=420, model="deepseek-reasoner")),
    ("groq_stream.sse", "openai", "/openai/v1/chat/completions", True,
     Usage(prompt_tokens=40, completion_tokens=12, model="llama-3.3-70b-versatile")),
]


@pytest.mark.parametrize("name,fmt,path,stream,expected", CASES, ids=[c[0] for c in CASES])
def test_extract_usage(name: str, fmt: str, path: str, stream: bool, expected: Usage) -> None:
    assert extract_usage(fmt, path, body(name), stream) == expected


@pytest.mark.parametrize("name,fmt,stream", [
    ("openai_error.json", "openai", False),
    ("anthropic_error.json", "anthropic", False),
    ("gemini_error.json", "gemini", False),
    ("openai_chat_stream_no_usage.sse", "openai", True),  # stream_options.include_usage not set
    ("anthropic_stream_error.sse", "anthropic", True),    # stopped before output was counted
])
def test_no_usage(name: str, fmt: str, stream: bool) -> None:
    assert extract_usage(fmt, "/v1/x", body(name), stream) is None


def test_empty_and_garbage_bodies() -> None:
    assert extract_usage("openai", "/v1/chat/completions", b"", True) is None
    assert extract_usage("openai", "/v1/chat/completions", b"<html>502 Bad Gateway</html>", False) is None
    assert extract_usage("openai", "/v1/chat/completions", b"{not json", False) is None
    assert extract_usage("openai", "/v1/chat/completions", b"data: [DONE]\n\n", True) is None


def test_stream_answered_with_json_error() -> None:
    assert extract_usage("anthropic", "/v1/messages", body("anthropic_error.json"), True) is None


def test_anthropic_message_delta_null_fields_keep_start_values() -> None:
    sse = (b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-haiku-4-5",'
           b'"usage":{"input_tokens":100,"cache_read_input_tokens":50,"cache_creation_input_tokens":7,'
           b'"output_tokens":1}}}\n\n'
           b'event: message_delta\ndata: {"type":"message_delta","delta":{},"usage":{"input_tokens":null,'
           b'"cache_read_input_tokens":null,"output_tokens":5}}\n\n'
           b'event: message_delta\ndata: {"type":"message_delta","delta":{},"usage":{"output_tokens":9,'
           b'"cache_creation_input_tokens":8}}\n\n')
    assert extract_usage("anthropic", "/v1/messages", sse, True) == Usage(
        prompt_tokens=100 + 50 + 8, completion_tokens=9, cache_read_tokens=50, cache_write_tokens=8,
        model="claude-haiku-4-5")


def test_gemini_model_from_path_when_response_has_none() -> None:
    sse = b'data: {"candidates": [],"usageMetadata": {"promptTokenCount": 3,"totalTokenCount": 3}}\r\n\r\n'
    u = extract_usage("gemini", "/v1beta/models/gemini-2.5-flash-lite:streamGenerateContent?alt=sse", sse, True)
    assert u == Usage(prompt_tokens=3, model="gemini-2.5-flash-lite")


def test_gemini_tool_use_prompt_tokens_are_input() -> None:
    j = (b'{"candidates": [],"usageMetadata": {"promptTokenCount": 10,"toolUsePromptTokenCount": 90,'
         b'"candidatesTokenCount": 5,"totalTokenCount": 105},"modelVersion": "gemini-2.5-flash"}')
    assert extract_usage("gemini", "/x", j, False) == Usage(prompt_tokens=100, completion_tokens=5,
                                                             model="gemini-2.5-flash")


def test_cut_gemini_array_stream_uses_the_last_usage_in_the_bytes() -> None:
    full = body("gemini_stream_array.json")
    path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    cut = full[:700] + full[-420:]  # the second chunk is broken, but its cumulative usage survived
    assert extract_usage("gemini", path, cut, True) == Usage(prompt_tokens=5, completion_tokens=10,
                                                             model="gemini-2.0-flash")
    head_only = full[: full.index(b"\n,\n")] + b"\n,\n{\"candid"  # only the first chunk is left
    assert extract_usage("gemini", path, head_only, True) == Usage(prompt_tokens=5, completion_tokens=1,
                                                                   model="gemini-2.0-flash")
    assert stream_content("gemini", path, head_only) == "Hello"


def test_cut_json_answer_salvages_trailing_usage() -> None:
    full = body("openai_chat.json")
    cut = full[:200] + full[-560:]
    assert extract_usage("openai", "/v1/chat/completions", cut, False) == Usage(
        prompt_tokens=2006, completion_tokens=300, cache_read_tokens=1920, model="gpt-4o-2024-08-06")


def test_usage_has_slots_and_value_equality() -> None:
    u = Usage(prompt_tokens=1)
    with pytest.raises(AttributeError):
        u.other = 2  # type: ignore[attr-defined]
    assert not hasattr(u, "__dict__")
    assert Usage() == Usage(0, 0, 0, 0, 0, "provider", None)
    assert Usage(prompt_tokens=3, completion_tokens=4).total_tokens == 7


# --------------------------------------------------------------------- SSE splitter


def test_iter_sse_line_endings_comments_multiline() -> None:
    raw = (b": keep-alive\n\n"
           b"event: a\ndata: {\"x\":\ndata: 1}\n\n"
           b"data: two\r\n\r\n"
           b"event: only-name\n\n"
           b"data:no-space\rid: 7\r\r"
           b"retry: 10\ndata\n\n"
           b"data: tail-without-terminator")
    assert list(iter_sse(raw)) == [
        (b"a", b'{"x":\n1}'),
        (b"", b"two"),
        (b"", b"no-space"),
        (b"", b""),
        (b"", b"tail-without-terminator"),
    ]


def test_iter_sse_cut_inside_event_is_ignored_not_fatal() -> None:
    raw = b'data: {"a":1}\n\ndata: {"b":' + b'":2}\n\nevent: x\ndata: {"c":3}\n\n'
    events = list(iter_sse(raw))
    assert events[0] == (b"", b'{"a":1}')
    assert events[-1] == (b"x", b'{"c":3}')


# --------------------------------------------------------------------- generated text


@pytest.mark.parametrize("name,fmt,text", [
    ("openai_chat.json", "openai", "The invoice total is $1,284.50, due on 30 November."),
    ("openai_chat_stream.sse", "openai", "Paris is the capital of France."),
    ("openai_chat_stream_no_usage.sse", "openai", "Hello, world!"),
    ("openai_chat_stream_tools.sse", "openai", 'get_weather{"city":"Oslo"}'),
    ("openai_responses.json", "openai", 'There are 3 r\'s in "strawberry".'),
    ("openai_responses_stream.sse", "openai", "Hi there! How can I help?"),
    ("openai_responses_stream_cut.sse", "openai", "Hi there! How can I help?"),  # final event survived
    ("anthropic_message.json", "anthropic",
     "Based on the contract you shared, the termination notice period is 90 days."),
    ("anthropic_stream.sse", "anthropic", "The report covers Q3 revenue, which grew 12% year over year."),
    ("anthropic_stream_thinking_1h.sse", "anthropic",
     'The user wants the weather; call the tool.Let me check.{"location": "San Francisco, CA"}'),
    ("gemini.json", "gemini", "Across the 40 filings, three risk factors recur: supply-chain concentration, "
                              "FX exposure and litigation."),
    ("gemini_stream.sse", "gemini", "Photosynthesis turns light, water and CO2 into sugar and oxygen."),
    ("gemini_stream_array.json", "gemini", "Hello there, how can I help you today?"),
    ("xai_chat.json", "openai", "101 * 3 = 303.101 times 3 is 303."),
    ("groq_stream.sse", "openai", "Fast inference matters."),
    ("openai_error.json", "openai", ""),
    ("anthropic_error.json", "anthropic", ""),
])
def test_stream_content(name: str, fmt: str, text: str) -> None:
    assert stream_content(fmt, "/p", body(name)) == text


def test_stream_content_of_cut_stream_is_head_and_tail_text() -> None:
    # head: the first 5 words, tail: the last one; the two events broken at the cut are dropped
    assert stream_content("openai", "/v1/chat/completions", body("openai_chat_stream_cut.sse")) \
        == " Once upon a time, in town"
    assert stream_content("anthropic", "/v1/messages", body("anthropic_stream_cut.sse")) \
        == " Once upon a time, in Once upon a"


# --------------------------------------------------------------------- shortcuts, held to the long way


usage_objects = st.fixed_dictionaries({}, optional={
    "prompt_tokens": st.integers(-2, 10**6) | st.none(), "completion_tokens": st.integers(0, 10**6),
    "total_tokens": st.integers(0, 10**6), "input_tokens": st.integers(0, 9), "output_tokens": st.integers(0, 9),
    "cache_read_input_tokens": st.integers(0, 9), "promptTokenCount": st.integers(0, 9),
    "prompt_tokens_details": st.fixed_dictionaries({}, optional={"cached_tokens": st.integers(0, 10**6) | st.none()}),
    "completion_tokens_details": st.fixed_dictionaries({}, optional={"reasoning_tokens": st.integers(0, 10**6)}),
})
answers = st.fixed_dictionaries({}, optional={
    "id": st.text(max_size=8), "model": st.sampled_from(["gpt-4o-mini", "", "gemini-2.5-flash"]) | st.integers(0, 3) | st.none(),
    "modelVersion": st.sampled_from(["gemini-2.5-pro", ""]),
    "usage": usage_objects | st.none() | st.just("usage"), "usageMetadata": usage_objects | st.integers(0, 3),
    "x_groq": st.fixed_dictionaries({}, optional={"usage": usage_objects}),
    "response": st.fixed_dictionaries({}, optional={"usage": usage_objects, "model": st.just("gpt-5")}),
    "choices": st.lists(st.fixed_dictionaries({"message": st.fixed_dictionaries({"content": st.text(max_size=40)})}), max_size=2),
    "type": st.sampled_from(["message_start", "message_delta", "response.completed", "chunk"]) | st.integers(0, 2),
    "message": st.fixed_dictionaries({"model": st.just("claude-x"), "usage": usage_objects}),
})


def _walked(hidden: str) -> Usage | None:
    return extract_usage("openai", "/v1/chat/completions", hidden.encode(), True)


@settings(max_examples=400, deadline=None)
@given(answers, st.sampled_from(["data: {}\n\n", "data: {}\n\n\n", "data:{}\n\n", "data: {}\r\n\r\n", "data: {}\n",
                                 "data:  {} \n\n", "data: {}\n\ndata: [DONE]\n\n", "event: x\ndata: {}\n\n"]))
def test_a_single_chunk_gives_the_walked_usage(answer: dict, frame: str) -> None:
    hidden = frame.replace("{}", json.dumps(answer, separators=(",", ":")), 1)
    short = usage_mod.single_chunk_usage(hidden)
    if short is not False:
        assert short == _walked(hidden)
    if frame in ("data: {}\n\n", "data:  {} \n\n"):
        kind = answer.get("type")
        walked_elsewhere = isinstance(kind, str) and kind != "chunk"
        if not walked_elsewhere:
            assert short is not False  # a plain chunk takes the short way
        # An Anthropic or Responses event goes the long way, unless the filter already knows it holds nothing.
        if short is False:
            assert walked_elsewhere


@pytest.mark.parametrize("hidden", [
    'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4.1","choices":[],'
    '"usage":{"prompt_tokens":108,"completion_tokens":5,"total_tokens":113}}\n\n',
    'data: {"model":"gpt-4.1","usage":null}\n\n', "data: [DONE]\n\n", "data: \n\n", "data: {\n\n", 'data: {"usage":{}}\n\n',
    'data: {"x_groq":{"usage":{"prompt_tokens":3}},"model":"llama"}\n\n', 'data: ["usage"]\n\n',
])
def test_single_chunks(hidden: str) -> None:
    short = usage_mod.single_chunk_usage(hidden)
    assert short is not False
    assert short == _walked(hidden)
