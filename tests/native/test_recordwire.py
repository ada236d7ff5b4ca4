"""The packed log record: both twins write the same bytes, and the exporter reads back exactly the
dict the readable oracle (tests/requestlog/record_oracle.py) describes, for every kind of request
the worker logs."""

from __future__ import annotations

import base64
import time
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgw.requestlog.record as record_mod
from fastgw.app import context_from_raw
from fastgw.config import Config, ProviderConfig
from fastgw.keys.principal import Principal
from fastgw.keys.record import KeyRecord
from fastgw.providers.table import Provider
from fastgw.requestlog.record import decode_record, encode_record, pack_record
from tests.native.twins import TWINS, load_twin
from tests.requestlog import record_oracle
from tests.requestlog.record_oracle import build_record

NOW = 10_000_000_000  # perf_counter_ns as both paths will read it
# Header blocks as they come (CRLF lines) and as they might: lines without ": ", several ": ", a bare
# CR, empty names and values, bytes past ASCII; and arbitrary bytes.
header_blocks = st.one_of(
    st.lists(st.sampled_from([b"a: b", b"no-sep", b"c: d: e", b": v", b"x:y", b"z: ", b"", b"\r", b"k:  v",
                              b"\xe9: \xff", b"a: again", b"t:\r: u"]), max_size=6).map(b"\r\n".join),
    st.binary(max_size=60),
)

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12).map(str.strip)


@st.composite
def contexts(draw):
    """A RequestContext as the stages leave it, over the fields the record reads."""
    raw = [(b"host", b"gw.test"), (b"content-type", b"application/json")]
    if draw(st.booleans()):
        raw.append((b"authorization", b"Bearer sk-SECRET"))
    if draw(st.booleans()):
        raw.append((b"x-goog-api-key", b"GOOG-SECRET"))
    for name in ("user-id", "session-id", "session-path", "session-name"):
        if draw(st.booleans()):
            raw.append((b"helicone-" + name.encode(), draw(header_values).encode() or b"x"))
    for name in ("omit-request", "omit-response"):
        if draw(st.booleans()):
            raw.append((b"helicone-" + name.encode(), draw(st.sampled_from([b"true", b"TRUE", b"false", b"1"]))))
    for i in range(draw(st.integers(0, 3))):
        raw.append((b"helicone-property-p%d" % i, draw(header_values).encode() or b"v"))
    target = draw(st.sampled_from([b"/v1/chat/completions", b"/v1/models/g:generate?key=SECRET&alt=sse",
                                   b"/caf\xe9/v1/messages"]))
    t_start = draw(st.integers(0, NOW))
    body = draw(st.binary(max_size=300))
    ctx = context_from_raw(draw(st.sampled_from([b"POST", b"GET"])), target, raw, body, t_start)
    if draw(st.booleans()):
        fmt = draw(st.sampled_from(["openai", "anthropic", "gemini"]))
        host = draw(st.sampled_from(["api.test", "b\u00fccher.test"]))
        ctx.provider = Provider.from_config(fmt, ProviderConfig(base_url=f"https://{host}", format=fmt))
        ctx.upstream_path = draw(st.sampled_from([b"/v1/chat/completions", b"/v1/x?api_key=SECRET"]))
        if draw(st.booleans()):
            ctx.unified = {"model": "m"}
    ctx.upstream_ns = draw(st.integers(0, NOW))  # may exceed the elapsed time: negative spans floor alike
    ctx.usage_injected = draw(st.booleans())
    ctx.hidden_usage = draw(st.sampled_from([b"", b'data: {"usage":{"total_tokens":3}}\n\n', b"\xff\xfe"]))
    ctx.cache_status = draw(st.sampled_from(["", "hit", "miss", "bypass"]))
    ctx.retry_count = draw(st.integers(0, 5))
    ctx.fallback_index = draw(st.integers(-1, 3))
    if draw(st.booleans()):
        ctx.attempts = [{"provider": "openai", "status": 500, "error": draw(texts)}]
    if draw(st.booleans()):
        record = KeyRecord(key_hash="0" * 64, key_id="key_" + "0" * 16, name="k", hint="fgw-...0000", created_at=0.0)
        ctx.principal = Principal(record, Config())
    if draw(st.booleans()):
        ctx.model_override = draw(texts)
    return ctx


def outcome(draw_from):
    return dict(
        status=draw_from(st.sampled_from([200, 400, 499, 502])),
        error=draw_from(st.sampled_from([None, ("upstream_error", "upstream said no"), ("bad", "caf\u00e9 \u2713 \ud800")])),
        response_body=draw_from(st.binary(max_size=200)),
        response_truncated=draw_from(st.booleans()),
        response_content_type=draw_from(st.sampled_from(["", "application/json", "text/event-stream"])),
        t_first_byte=draw_from(st.sampled_from([0, 1, NOW // 2, NOW])),
        client_left=draw_from(st.booleans()),
        body_limit=draw_from(st.sampled_from([64, 65536])),
        omit_request=draw_from(st.booleans()),
        omit_response=draw_from(st.booleans()),
        worker=draw_from(st.integers(0, 7)),
    )


@pytest.fixture(scope="module")
def frozen_clock():
    """Both paths read the same perf_counter_ns, so the spans they compute can be compared."""
    with pytest.MonkeyPatch.context() as mp:
        clock = SimpleNamespace(perf_counter_ns=lambda: NOW)
        mp.setattr(record_mod, "time", clock)
        mp.setattr(record_oracle, "time", clock)
        yield


def _readable(ctx, kw) -> dict:
    """build_record's dict as the exporter used to receive it (JSON meta), hidden usage included."""
    error = kw["error"]
    if error is not None and "\ud800" in error[1]:
        # orjson refuses a lone surrogate; the packed record keeps the message, with '?' for it.
        kw = {**kw, "error": (error[0], error[1].encode("utf-8", "replace").decode())}
    meta, request_body, response_body = build_record(ctx, **kw)
    if ctx.hidden_usage:
        meta["hidden_usage"] = ctx.hidden_usage.decode("utf-8", "replace")
    return decode_record(encode_record(meta, request_body, response_body))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_packed_record_reads_back_as_the_readable_record(frozen_clock, data) -> None:
    ctx = data.draw(contexts())
    kw = outcome(data.draw)
    packed = pack_record(ctx, **kw)
    got = decode_record(packed)
    want = _readable(ctx, kw)
    assert got == want
    assert list(got) == list(want)  # the same key order, for any sink that writes keys in order
    for secret in (b"SECRET", b"sk-SECRET"):
        assert secret not in packed


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_the_twins_pack_and_unpack_the_same_bytes(data) -> None:
    compiled, pure = (load_twin(name, "recordwire") for name in TWINS)
    ctx = data.draw(contexts())
    error_type, error_message = data.draw(st.sampled_from([("", ""), ("e", "caf\u00e9"), ("e", "x\udfff")]))
    args = (
        ctx, data.draw(st.sampled_from([200, 503])), error_type, error_message, data.draw(st.binary(max_size=40)),
        data.draw(texts), data.draw(header_blocks), data.draw(st.binary(max_size=100)), data.draw(st.booleans()),
        data.draw(st.binary(max_size=100)), data.draw(st.booleans()), data.draw(texts),
        data.draw(st.sampled_from([0, 5, NOW])), data.draw(st.booleans()), data.draw(st.booleans()),
        data.draw(st.booleans()), data.draw(st.integers(0, 64)), NOW,
    )
    packed = compiled.pack_request(*args)
    assert packed == pure.pack_request(*args)
    n_meta = int.from_bytes(packed[:4], "little") & ~compiled.BINARY
    unpacked = compiled.unpack_meta(packed, 12, n_meta)
    assert unpacked == pure.unpack_meta(packed, 12, n_meta)
    # The header block comes back as the dict the JSON path made of it: line by line, ": " splits.
    assert unpacked["request_headers"] == pure.header_lines(args[6].decode("latin-1"))


@pytest.mark.parametrize("twin", TWINS)
def test_a_cut_meta_is_a_value_error_never_a_crash(twin) -> None:
    wire = load_twin(twin, "recordwire")
    ctx = context_from_raw(b"POST", b"/v1/chat/completions", [(b"host", b"h")], b"{}", 0)
    packed = wire.pack_request(ctx, 200, "", "", b"/p", "", b"", b"{}", False, b"", False, "", 0, False, False,
                               False, 0, NOW)
    n_meta = int.from_bytes(packed[:4], "little") & ~wire.BINARY
    for n in (0, 10, 60, 61, n_meta - 1):
        with pytest.raises(ValueError):
            wire.unpack_meta(packed[: 12 + n], 12, n)
    with pytest.raises(ValueError):
        wire.unpack_meta(packed, 12, len(packed))  # past the end of the record


@pytest.mark.parametrize("twin", TWINS)
def test_hostile_arguments_are_errors_never_a_crash(twin) -> None:
    wire = load_twin(twin, "recordwire")
    for start, n in ((2**62, 2**62), (50, 2**62), (2**62, 1), (-1, 5), (5, -1)):
        with pytest.raises(ValueError):
            wire.unpack_meta(b"x" * 100, start, n)
    with pytest.raises(TypeError):
        wire.unpack_meta(None, 0, 0)
    with pytest.raises(TypeError):
        wire.contains_any(None, (b"key:",))
    ctx = context_from_raw(b"POST", b"/v1/chat/completions", [(b"host", b"h")], b"{}", 0)
    with pytest.raises(TypeError):
        wire.pack_request(ctx, 200, "", "", b"/p", "", b"", b"{}", False, None, False, "", 0, False, False, False, 0, NOW)


def test_rejected_records_are_kept_readable() -> None:
    """The rejected file is for a human: a packed record goes there decoded, or else as base64."""
    from fastgw.requestlog.record import rejected_entry

    ctx = context_from_raw(b"POST", b"/v1/chat/completions", [(b"host", b"h")], b'{"m":1}', 0)
    packed = pack_record(ctx, status=200, error=None, response_body=b"ok", response_truncated=False,
                         response_content_type="", t_first_byte=0, client_left=False, body_limit=100,
                         omit_request=False, omit_response=False, worker=0)
    assert rejected_entry(packed, 2) == {"worker": 2, "decoded": decode_record(packed)}
    cut = packed[:40]
    assert base64.b64decode(rejected_entry(cut, 2)["raw_base64"]) == cut
    assert rejected_entry(b"\x05\x00\x00\x00garbage", 1) == {"worker": 1, "raw": "\x05\x00\x00\x00garbage"}
    assert rejected_entry(b"ab", 1) == {"worker": 1, "raw": "ab"}


@pytest.mark.parametrize("twin", TWINS)
def test_contains_any(twin) -> None:
    wire = load_twin(twin, "recordwire")
    hints = (b"key:", b"auth:", b"cookie:")
    assert wire.contains_any(b"x-goog-api-key: v\r\n", hints)
    assert wire.contains_any(b"a: b\r\ncookie: c\r\n", hints)
    assert not wire.contains_any(b"content-type: application/json\r\nx-keys: 1\r\n", hints)
    assert not wire.contains_any(b"", hints)


@st.composite
def haystack_and_needles(draw):
    """Needles that often share their last byte (as the credential hints do), and data made of
    their pieces, whole needles and filler, so that hits, near misses and needles cut off at the
    data's start are all common."""
    shared = draw(st.sampled_from([b":", b"a", b"\x00", b"\xff", None]))
    needles = draw(st.lists(st.binary(max_size=5), min_size=1, max_size=6))
    if shared is not None:
        needles = [n + shared for n in needles]
    pieces = [n[i:] for n in needles for i in range(len(n))] + [b":", b"a", b"xy", b"\r\n"]
    data = b"".join(draw(st.lists(st.sampled_from(pieces), max_size=12)))
    return data, tuple(needles)


@pytest.mark.parametrize("twin", TWINS)
@settings(max_examples=400, deadline=None)
@given(case=haystack_and_needles())
def test_contains_any_is_any_needle_in_data(twin, case) -> None:
    data, needles = case
    assert load_twin(twin, "recordwire").contains_any(data, needles) == any(n in data for n in needles)


@pytest.mark.parametrize("twin", TWINS)
def test_contains_any_edges(twin) -> None:
    contains_any = load_twin(twin, "recordwire").contains_any
    assert contains_any(b"", (b"",)) and contains_any(b"", (b"x:", b""))  # the empty needle is in everything
    assert not contains_any(b"", (b"x:", b"y:")) and not contains_any(b"abc", ())
    assert contains_any(b"key:", (b"x-api-key:", b"key:"))  # a longer needle reaching before the data's start
    assert not contains_any(b"ey:", (b"key:", b"auth:"))
    assert contains_any(b"a:b:c", (b"zz:", b"b:"))  # the second occurrence of the shared byte
    assert contains_any(b"token", (b"key:", b"token"))  # needles with different last bytes
    assert contains_any(b"a::", (b"::", b"q:"))  # a hit right after another occurrence of the shared byte
    long = b"x" * 5000
    assert contains_any(long + b"key:", (b"key:", b"auth:")) and not contains_any(long + b":", (b"key:", b"auth:"))
    colons = b":" * 70_000  # every byte a near miss for every hint
    assert not contains_any(colons, (b"key:", b"auth:", b"authorization:", b"cookie:", b"token:"))
    for bad in ((b"x:", None), (b"x:", "y:"), (b"x:", bytearray(b"y:")), (b"x:", b"y:", 5)):
        with pytest.raises(TypeError):
            contains_any(b"x:", bad)


@pytest.mark.parametrize("twin", TWINS)
def test_header_value(twin) -> None:
    value = load_twin(twin, "recordwire").header_value
    block = b"X-Content-Type: nope\r\nContent-Type:  text/event-stream; charset=utf-8 \r\ncontent-type: second\r\n"
    assert value(block, b"content-type") == "text/event-stream; charset=utf-8"  # the first, at a line start
    assert value(b"x-content-type: nope\r\n", b"content-type") == ""
    assert value(b"content-typex: nope\r\ncontent-type:\tjson\t", b"content-type") == "json"  # no CRLF at the end
    assert value(b"a: b\ncontent-type: lf only\nc: d", b"content-type") == "lf only"
    assert value(b"content-type:\r\n", b"content-type") == ""
    assert value(b"content-type: caf\xe9\r\n", b"content-type") == "caf\xe9"  # latin-1, as it came
    assert value(b"", b"content-type") == value(b"\r\n", b"content-type") == value(b"content-type", b"content-type") == ""


_HEADER_BYTES = st.sampled_from([b"content-type", b"Content-Type", b"CONTENT-TYPE", b"x-content-type", b"a", b":",
                                 b" ", b"\t", b"\r", b"\n", b"\r\n", b"json", b"\xe9", b"content-typ"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_HEADER_BYTES, max_size=24).map(b"".join))
def test_the_twins_find_the_same_header_value(block) -> None:
    compiled, pure = (load_twin(name, "recordwire") for name in TWINS)
    for name in (b"content-type", b"a", b"x-content-type"):
        assert compiled.header_value(block, name) == pure.header_value(block, name), (block, name)
    assert record_mod.content_type_of(block) == pure.header_value(block, b"content-type")


def test_json_records_of_older_versions_and_events_still_decode() -> None:
    meta = {"kind": "request", "request_id": "r", "properties": {"a": "b"}, "request_headers": "x: y\r\n"}
    assert decode_record(encode_record(meta, b"q", b"s")) == {**meta, "request_headers": {"x": "y"},
                                                               "request_body": "q", "response_body": "s"}
    event = {"kind": "feedback", "request_id": "r", "rating": True}
    assert decode_record(encode_record(event)) == event


def test_the_logger_pushes_packed_records_that_read_back_whole(tmp_path) -> None:
    """The worker's own call, end to end: RequestLogger, the ring, the exporter's drain."""
    from fastgw.config import LoggingConfig
    from fastgw.requestlog.buffer import RecordBuffer, RecordDrain
    from fastgw.requestlog.logger import RequestLogger

    buffer = RecordBuffer(str(tmp_path / "ring-0.shm"), str(tmp_path / "spill"), 1 << 16)
    drain = RecordDrain(str(tmp_path / "ring-0.shm"), str(tmp_path / "spill"))
    logger = RequestLogger(LoggingConfig(), buffer, worker=3)
    raw = [(b"host", b"h"), (b"authorization", b"Bearer sk-SECRET"), (b"helicone-property-env", b"prod")]
    ctx = context_from_raw(b"POST", b"/v1/chat/completions", raw, b'{"model":"m"}', time.perf_counter_ns())
    ctx.provider = Provider.from_config("openai", ProviderConfig(base_url="https://api.test"))
    ctx.upstream_path = b"/v1/chat/completions"
    logger.log_request(ctx, status=200, error=None, body=b'{"ok":1}', content_type="application/json",
                       t_first_byte=time.perf_counter_ns(), client_left=False)
    pushed = drain.read_batch(10, 1 << 20).records
    buffer.close()
    drain.close()
    assert logger.failures == 0 and len(pushed) == 1
    assert b"sk-SECRET" not in pushed[0]
    got = decode_record(pushed[0])
    assert got["properties"] == {"env": "prod"} and got["worker"] == 3 and got["status"] == 200
    assert got["request_headers"]["authorization"] == "[redacted]"
    assert got["request_body"] == '{"model":"m"}' and got["response_body"] == '{"ok":1}'
    assert got["target_url"] == "https://api.test:443/v1/chat/completions"
    assert orjson.loads(got["request_body"]) == {"model": "m"}


# --- the requested model, by a scan of the request body --------------------------------------------

def _parsed_model(body: bytes | str) -> str:
    """What the exporter's full parse gives (enrich.model_of(request_json(body)))."""
    from fastgw.requestlog.enrich import model_of, request_json

    return model_of(request_json(body))


_json_leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=8), st.sampled_from(["model", '"model": "x"', "\\", '\\"', "{", "]", "é", "🙂"]))
_json_values = st.recursive(
    _json_leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(["model", "messages", "content", "m", "modelx", "é"]), inner,
                                            max_size=4)),
    max_leaves=12)
_bodies = st.dictionaries(st.sampled_from(["model", "messages", "stream", "tools", "metadata", "mode", "Model"]),
                          _json_values, max_size=5)


@settings(max_examples=500, deadline=None)
@given(body=_bodies, indent=st.booleans(), as_text=st.booleans())
def test_the_scan_reads_the_model_a_parse_reads(body, indent, as_text) -> None:
    """Valid JSON objects, "model" at any depth and in strings: the scan gives the parse's answer,
    or None (parse it) only when the model's value needed an escape; both twins give the same."""
    raw = orjson.dumps(body, option=orjson.OPT_INDENT_2 if indent else 0)
    text = raw.decode() if as_text else raw
    compiled, pure = (load_twin(name, "recordwire").top_level_model(text) for name in TWINS)
    assert compiled == pure
    model = body.get("model")
    escaped = isinstance(model, str) and orjson.dumps(model)[1:-1] != model.encode()  # quotes, backslashes, controls
    assert compiled == (None if escaped else _parsed_model(text))


@pytest.mark.parametrize("twin", TWINS)
def test_the_scan_answers_none_where_it_cannot_be_sure(twin) -> None:
    scan = load_twin(twin, "recordwire").top_level_model
    assert scan(b'{"model":"a","model":"b"}') is None  # the key twice
    assert scan(b'{"mod\\u0065l":"x"}') is None  # an escaped key may spell "model"
    assert scan(b'{"model":"gpt\\u002d4o"}') is None  # an escaped value
    assert scan(b'{"model":"\xff"}') is None  # not UTF-8
    assert scan(b'{"messages":[{"content":"abc') is None  # cut short, as a capped body is
    assert scan(b'{"messages":[{"content":"head ... tail"}]],"model":"m"}') is None  # brackets that don't match
    assert scan(b'{"model":"m"} {"model":"n"}') is None  # more after the object
    assert scan(b"{" + b"[" * 300 + b"]" * 300 + b',"model":"m"}') is None  # deeper than 255
    assert scan(b"{" + b"[" * 250 + b"]" * 250 + b',"model":"m"}') == "m"
    assert scan(b' {"model":"m"}') == scan(b'["model"]') == scan(b"") == scan(b'{"model":null}') == ""
    assert scan(b'{"a":"\\\\","model":"z"}') == scan(b'{"a":"\\\\\\"}","model":"z"}') == "z"  # backslashes before quotes
    assert scan('{"model":"été"}') == scan('{"model":"été"}'.encode()) == "été"
    with pytest.raises(TypeError):
        scan(None)


def test_the_requested_model_equals_the_parse_whatever_the_body() -> None:
    """enrich.requested_model parses where the scan can't be sure, so the row's model_requested is
    the parse's for these bodies, valid JSON or not. The one documented difference: text that is not
    JSON but whose strings and brackets close gives the model it names, where the parse gives none."""
    from fastgw.requestlog.enrich import requested_model

    bodies = [b'{"model":"a","model":"b"}', b'{"mod\\u0065l":"x"}', b'{"model":"gpt\\u002d4o"}',
              b'{"messages":[{"content":"abc', b'{"model":"m"} {"model":"n"}', b'{"model":1}', b"", b"null",
              b'{"messages":[],"model":"gpt-4o-mini","stream":true}', '{"model":"été"}', b' {"model":"x"}']
    for body in bodies:
        assert requested_model(body) == _parsed_model(body), body
    assert requested_model(b'{"model":"m" "stream":tru}') == "m" and _parsed_model(b'{"model":"m" "stream":tru}') == ""
