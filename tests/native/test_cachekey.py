"""The cache-key builder, both twins: the canonical form and key stream of cachekey.pyi, then the
two twins against each other and the canonical text against json's and orjson's sorted output.

The compiled twin is never skipped: if the extension is not built the "cython" cases fail
(CI always builds it: ``python setup.py build_ext --inplace``).
"""
import itertools
import json
import os
import random

import orjson
import pytest
import xxhash
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import fastgw._native
from tests.native.twins import TWINS, load_twin

FORMAT = b"fastgw.cachekey.v1\x00"
MAX_DEPTH = 256
FIELDS = ("seed", "provider", "target", "path", "credential")
REQUEST = {
    "seed": b"",
    "provider": b"openai",
    "target": b"https://api.openai.com",
    "path": b"/v1/chat/completions",
    "credential": b"Bearer sk-proj-abc123",
}


def _load(name):
    return load_twin(name, "cachekey")


@pytest.fixture(params=TWINS)
def twin(request):
    return _load(request.param)


def key(twin, body, ignore_keys=(), **fields):
    return twin.cache_key(**{**REQUEST, **fields}, body=body, ignore_keys=ignore_keys)


def stream_key(payload, **fields):
    """The key cachekey.pyi's stream layout gives: payload is b"J" + canonical or b"R" + body."""
    fields = {**REQUEST, **fields}
    framed = b"".join(len(fields[f]).to_bytes(8, "little") + fields[f] for f in FIELDS)
    return xxhash.xxh3_128(FORMAT + framed + payload).digest()


def sorted_dumps(value, ignore=frozenset()):
    """The canonical form of a parsed value, by json: sorted keys, no spaces, minimal escapes."""
    if isinstance(value, dict) and ignore:
        value = {k: v for k, v in value.items() if k.encode() not in ignore}
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# ---------------------------------------------------------------------------------------------
# Rendering one JSON value in many textual forms.

WHITESPACE = ["", "", "", " ", "  ", "\n", "\t", "\r\n  "]
SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _u_escape(code, rnd):
    text = f"\\u{code:04x}"
    return text.upper().replace("\\U", "\\u") if rnd.random() < 0.5 else text


def render_string(s, rnd):
    out = []
    for ch in s:
        code = ord(ch)
        r = rnd.random()
        if ch in SHORT_ESCAPES and r < 0.5:
            out.append(SHORT_ESCAPES[ch])
        elif code < 0x20 or ch in '"\\' or r < 0.15:
            if code > 0xFFFF:
                code -= 0x10000
                out.append(_u_escape(0xD800 + (code >> 10), rnd) + _u_escape(0xDC00 + (code & 0x3FF), rnd))
            else:
                out.append(_u_escape(code, rnd))
        elif ch == "/" and r < 0.6:
            out.append("\\/")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render_value(value, rnd, duplicates=True):
    """value as JSON text: random whitespace, member order and escapes, and sometimes a member
    repeated before its real occurrence (the last one wins, so the meaning is unchanged)."""

    def ws():
        return rnd.choice(WHITESPACE)

    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        members = []
        for k, v in items:
            if duplicates and rnd.random() < 0.15:
                members.append((k, rnd.choice([[], {}, "dropped", 0])))
            members.append((k, v))
        inner = ",".join(
            ws() + render_string(k, rnd) + ws() + ":" + ws() + render_value(v, rnd, duplicates) + ws()
            for k, v in members
        )
        return "{" + (inner or ws()) + "}"
    if isinstance(value, list):
        inner = ",".join(ws() + render_value(v, rnd, duplicates) + ws() for v in value)
        return "[" + (inner or ws()) + "]"
    if isinstance(value, str):
        return render_string(value, rnd)
    return json.dumps(value)  # numbers as repr writes them, so the same value is the same text


def render(value, rnd, duplicates=True):
    return (rnd.choice(WHITESPACE) + render_value(value, rnd, duplicates) + rnd.choice(WHITESPACE)).encode()


keys = st.text(max_size=6) | st.sampled_from(["", "a", "ab", "b", "B", "é", "\n", '"', "\\", "\x7f", "\U0001f600", "/"])
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars, lambda kids: st.lists(kids, max_size=5) | st.dictionaries(keys, kids, max_size=6), max_leaves=30
)
int64_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(keys, kids, max_size=6),
    max_leaves=30,
)
objects = st.dictionaries(keys, json_values, max_size=8)

# Text made of JSON's own pieces, mostly not JSON: it drives both tokenizers down their error paths.
PIECES = [
    "{", "}", "[", "]", ",", ":", '"', " ", "\n", "\\", "\\/", "\\n", "\\x", "\\u", "\\u00e9", "\\ud83d",
    "\\ude00", "\\uD800", "\\u0000", "0", "1", "-", "+", ".", "e", "E", "01", "1.5", "true", "false",
    "null", "tru", "NaN", "Infinity", "a", "é", "\x01", "\x7f", "\ufeff", "\U0001f600",
]
json_like = st.lists(st.sampled_from(PIECES), max_size=30).map(lambda p: "".join(p).encode())
PROPERTY_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(twin, body, ignore_keys):
    return twin.canonical_json(body, ignore_keys), key(twin, body, ignore_keys)


def ignore_sets(value):
    """Strategy: ignore-key tuples mixing the value's top-level keys with other bytes."""
    top = sorted(k.encode() for k in value) if isinstance(value, dict) else []
    picked = st.lists(st.sampled_from(top), max_size=3) if top else st.just([])
    return st.tuples(picked, st.lists(st.binary(max_size=4), max_size=2)).map(lambda t: tuple(t[0] + t[1]))


# ---------------------------------------------------------------------------------------------
# Plumbing.

def test_package_uses_the_compiled_twin_unless_told_not_to():
    expected = "pure" if os.environ.get("FASTGW_PURE") == "1" else "cython"
    assert fastgw._native.cachekey is _load(expected)
    from fastgw._native import cachekey

    assert cachekey is fastgw._native.cachekey


def test_constants(twin):
    assert twin.FORMAT == FORMAT
    assert twin.MAX_DEPTH == MAX_DEPTH
    assert set(twin.__all__) == {"FORMAT", "MAX_DEPTH", "cache_key", "canonical_json"}


@pytest.mark.parametrize(
    "args",
    [
        {"body": "{}"},
        {"body": None},
        {"body": bytearray(b"{}")},
        {"seed": "s"},
        {"credential": None},
        {"ignore_keys": [b"a"]},
        {"ignore_keys": ("a",)},
        {"ignore_keys": None},
        {"body": type("BytesSubclass", (bytes,), {})(b"{}")},
        {"ignore_keys": type("TupleSubclass", (tuple,), {})()},
    ],
)
def test_type_errors(twin, args):
    call = {**REQUEST, "body": b"{}", "ignore_keys": (), **args}
    with pytest.raises(TypeError):
        twin.cache_key(**call)
    if set(args) <= {"body", "ignore_keys"}:
        with pytest.raises(TypeError):
            twin.canonical_json(call["body"], call["ignore_keys"])


# ---------------------------------------------------------------------------------------------
# The key stream.

def test_digest_is_the_canonical_xxh3_128_of_the_stream(twin):
    body = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}'
    canonical = b'{"messages":[{"content":"hi","role":"user"}],"model":"gpt-4o"}'
    assert twin.canonical_json(body, ()) == canonical
    k = key(twin, body)
    assert type(k) is bytes and len(k) == 16
    assert k == stream_key(b"J" + canonical)


def test_not_json_is_hashed_raw_under_its_own_tag(twin):
    body = b'{"a": 1,}'
    assert twin.canonical_json(body, ()) is None
    assert key(twin, body, (b"a",)) == key(twin, body) == stream_key(b"R" + body)


def test_raw_and_json_streams_never_meet(twin):
    # The same bytes as a JSON body and (hypothetically) as a raw one hash differently.
    assert key(twin, b"{}") == stream_key(b"J{}") != stream_key(b"R{}")
    assert key(twin, b"{} x") != key(twin, b"{}")


def test_fields_are_framed(twin):
    assert key(twin, b"{}", seed=b"ab", provider=b"c") != key(twin, b"{}", seed=b"a", provider=b"bc")
    assert key(twin, b"{}", path=b"/v1", credential=b"") != key(twin, b"{}", path=b"/", credential=b"v1")
    assert key(twin, b"1", credential=b"k") != key(twin, b"k1", credential=b"")


@settings(max_examples=200, deadline=None)
@given(
    text=st.binary(max_size=12),
    cuts=st.lists(st.integers(0, 12), min_size=4, max_size=4),
    other=st.lists(st.integers(0, 12), min_size=4, max_size=4),
)
def test_every_split_of_the_same_bytes_is_a_different_key(text, cuts, other):
    """The fields are the same bytes cut in different places: framing keeps the keys apart."""

    def split(points):
        points = sorted(min(p, len(text)) for p in points)
        bounds = [0, *points, len(text)]
        return dict(zip(FIELDS, (text[a:b] for a, b in itertools.pairwise(bounds))))

    a, b = split(cuts), split(other)
    for name in TWINS:
        twin = _load(name)
        assert (key(twin, b"{}", **a) == key(twin, b"{}", **b)) == (a == b)


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(FIELDS + ("body",)), value=st.binary(max_size=30))
def test_every_field_is_in_the_key(field, value):
    base = {**REQUEST, "body": b'{"model":"m"}'}
    changed = {**base, field: value}
    for name in TWINS:
        twin = _load(name)
        same = twin.cache_key(**base, ignore_keys=()) == twin.cache_key(**changed, ignore_keys=())
        if field == "body":
            assert same == (twin.canonical_json(value, ()) == base["body"])
        else:
            assert same == (value == base[field])


# ---------------------------------------------------------------------------------------------
# The canonical form, rule by rule.

@pytest.mark.parametrize(
    "body, canonical",
    [
        (b' { "b" : 1 ,\n\t"a" : [ 1 , 2 ] } ', b'{"a":[1,2],"b":1}'),
        (b'"\\u0061\\/\\u00E9\\u00e9"', '"a/éé"'.encode()),
        (b'"\\ud83d\\ude00"', '"\U0001f600"'.encode()),
        (b'"\\ud7ff\\ue000\\uFFFF\\udbff\\udfff"', '"\ud7ff\ue000\uffff\U0010ffff"'.encode()),
        (b'"\\u0022\\u005c\\u005C"', b'"\\"\\\\\\\\"'),
        (b'"\\u0008\\u0009\\u000a\\u000C\\u000d\\u0000\\u001F\\u007f"', b'"\\b\\t\\n\\f\\r\\u0000\\u001f\x7f"'),
        (b'"\\b\\t\\n\\f\\r"', b'"\\b\\t\\n\\f\\r"'),
        (b"[1, 1.0, 1e0, 1E+0, -0, 0.5e-3, 12345678901234567890123]", b"[1,1.0,1e0,1E+0,-0,0.5e-3,12345678901234567890123]"),
        (b" true ", b"true"),
        (b"null", b"null"),
        (b"[[],{},[{}]]", b"[[],{},[{}]]"),
        (b'{"a":1,"a":2}', b'{"a":2}'),
        (b'{"a":{"x":1},"b":0,"a":{"y":2}}', b'{"a":{"y":2},"b":0}'),
        (b'{"\\u0061":1,"a":2}', b'{"a":2}'),
        (b'{"b":1,"a\\u0000":2,"a":3,"":4}', b'{"":4,"a":3,"a\\u0000":2,"b":1}'),
        (b'{"\\n":1,"A":2,"\\"":3,"\\\\":4}', b'{"\\n":1,"\\"":3,"A":2,"\\\\":4}'),  # by decoded bytes
        ('{"é":1,"z":2,"\U0001f600":3,"\uffff":4}'.encode(), '{"z":2,"é":1,"\uffff":4,"\U0001f600":3}'.encode()),
    ],
)
def test_canonical_examples(twin, body, canonical):
    assert twin.canonical_json(body, ()) == canonical


def test_numbers_keep_their_text(twin):
    variants = [b'{"t":1}', b'{"t":1.0}', b'{"t":1e0}', b'{"t":1E0}', b'{"t":10e-1}']
    assert len({key(twin, v) for v in variants}) == len(variants)
    assert key(twin, b'{"t":-0}') != key(twin, b'{"t":0}')


def test_equal_json_in_different_text_is_one_key(twin):
    forms = [
        b'{"model":"gpt-4o","messages":[{"role":"user","content":"a/b"}]}',
        b'{ "messages" : [ { "content" : "a\\/b" , "role" : "user" } ] , "model" : "gpt-4o" }',
        b'{"messages":[{"role":"\\u0075ser","content":"\\u0061/b"}],"model":"gpt-4o"}',
        b'{"model":"x","messages":[{"role":"user","content":"a/b"}],"model":"gpt-4o"}',
        b'\r\n{"\\u006dodel":"gpt-\\u0034o",\t"messages":[{"content":"a\\u002fb","role":"user"}]}\n',
    ]
    assert len({key(twin, f) for f in forms}) == 1
    assert len({twin.canonical_json(f, ()) for f in forms}) == 1


NOT_JSON = [
    b"", b" ", b"\n", b"{", b"}", b"[", b"[1,]", b'{"a":1,}', b"{,}", b"[,1]", b"[1 2]", b'{"a" 1}', b'{"a":}',
    b"{1:2}", b"{'a':1}", b"{a:1}", b'{"a":1}}', b"{} {}", b"01", b"-01", b"1.", b".5", b"1e", b"1e+", b"+1",
    b"-", b"--1", b"0x10", b"1_000", b"NaN", b"Infinity", b"-Infinity", b"[nan]", b"tru", b"nulll", b"True",
    b"None", b"'a'", b'"a', b'"a\\"', b'"\x01"', b'"\t"', b'"\n"', b'"\\x41"', b'"\\U0041"', b'"\\u12"',
    b'"\\u12g4"', b'"\\ud800"', b'"\\udc00"', b'"\\ud800\\u0041"', b'"\\ud800\\ud800"', b'"\\ude00\\ud83d"',
    b'"\\ud83d"x', b'"\xff"', b'"\x80"', b'"\xc0\x80"', b'"\xc1\xbf"', b'"\xe0\x80\x80"', b'"\xed\xa0\x80"',
    b'"\xf0\x80\x80\x80"', b'"\xf4\x90\x80\x80"', b'"\xf5\x80\x80\x80"', b'"\xc3"', b'"\xe2\x82"',
    b"\xef\xbb\xbf{}", b"\x00", b"{}\x00", b"/**/{}", b"// c\n{}", b"[1]\x0b", b"\x0c1", b"\xa01",
    "[1,\u00a02]".encode(), b'{"a":1,"a":"\\ud800"}', b'{"a":"\\ud800","a":1}', b'{"a":[1,"\xff"],"a":2}',
]


@pytest.mark.parametrize("body", NOT_JSON)
def test_not_json(twin, body):
    assert twin.canonical_json(body, ()) is None
    assert twin.canonical_json(body, (b"a",)) is None
    assert key(twin, body, (b"a",)) == stream_key(b"R" + body)


def test_ignore_keys_only_at_the_top_level(twin):
    body = b'{"user":"u1","model":"m","metadata":{"user":"u2"},"messages":[{"user":"u3"}]}'
    assert twin.canonical_json(body, (b"user",)) == b'{"messages":[{"user":"u3"}],"metadata":{"user":"u2"},"model":"m"}'
    assert key(twin, body, (b"user",)) == key(twin, body.replace(b'"user":"u1",', b""))
    assert key(twin, body, (b"user",)) != key(twin, body)
    assert twin.canonical_json(b'[{"user":1}]', (b"user",)) == b'[{"user":1}]'
    assert twin.canonical_json(b'"user"', (b"user",)) == b'"user"'


def test_ignore_keys_match_decoded_keys(twin):
    body = b'{"us\\u0065r":1,"\\n":2,"\\u00e9":3,"k":4}'
    assert twin.canonical_json(body, (b"user", b"\n", "é".encode())) == b'{"k":4}'
    assert twin.canonical_json(body, (b"us\\u0065r", b"\\n", b"")) == b'{"\\n":2,"k":4,"user":1,"\xc3\xa9":3}'


def test_ignore_keys_drop_every_duplicate_and_may_empty_the_object(twin):
    assert twin.canonical_json(b'{"a":1,"b":2,"a":3}', (b"a",)) == b'{"b":2}'
    assert twin.canonical_json(b'{"a":1,"b":2,"a":3}', (b"a", b"b")) == b"{}"
    assert twin.canonical_json(b'{"a":1}', (b"x", b"y")) == b'{"a":1}'


def test_many_ignore_keys(twin):
    ignore = tuple(f"k{i}".encode() for i in range(40))  # more than fit on the compiled twin's stack
    body = json.dumps({f"k{i}": i for i in range(50)}).encode()
    assert twin.canonical_json(body, ignore) == sorted_dumps({f"k{i}": i for i in range(40, 50)})


def test_many_members_are_sorted(twin):
    rnd = random.Random(7)
    value = {f"{rnd.random():.6f}": {f"k{j}": j for j in range(rnd.randrange(30))} for _ in range(2000)}
    body = render(value, rnd)
    assert twin.canonical_json(body, ()) == sorted_dumps(value)


def test_nesting_limit(twin):
    for depth, ok in [(1, True), (MAX_DEPTH, True), (MAX_DEPTH + 1, False), (100_000, False)]:
        arrays = b"[" * depth + b"1" + b"]" * depth
        objects = b'{"a":' * depth + b"1" + b"}" * depth
        mixed = b'[{"a":' * (depth // 2) + b"[" * (depth % 2) + b"1" + b"]" * (depth % 2) + b"}]" * (depth // 2)
        for body in (arrays, objects, mixed):
            assert (twin.canonical_json(body, ()) == body) is ok, (depth, body[:20])
            assert (key(twin, body) == stream_key(b"J" + body)) is ok


def test_nesting_limit_applies_to_dropped_members(twin):
    deep = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    assert twin.canonical_json(b'{"a":' + deep + b',"a":1}', ()) is None
    assert twin.canonical_json(b'{"a":' + deep + b"}", (b"a",)) is None
    assert twin.canonical_json(b'{"a":' + deep[2:-2] + b"}", (b"a",)) == b"{}"  # 1 + 255 containers


@pytest.mark.parametrize("size", [4000, 4095, 4096, 4097, 5000])
def test_bodies_around_the_stack_buffer(twin, size):
    """The compiled twin switches from stack to heap buffers at 4 KB: both sides of it."""
    for pad in range(size - 30, size - 20):
        body = b'{"b":"' + b"x" * pad + b'", "a":1}'
        assert twin.canonical_json(body, ()) == b'{"a":1,"b":"' + b"x" * pad + b'"}'
        assert twin.canonical_json(body, (b"a",)) == b'{"b":"' + b"x" * pad + b'"}'
        assert key(twin, body) == stream_key(b"J" + twin.canonical_json(body, ()))
        assert key(twin, body + b",") == stream_key(b"R" + body + b",")


def chat_body(rnd, size):
    """A chat-completion request of about ``size`` bytes, as a parsed value."""
    messages = [{"role": "system", "content": "You are a helpful assistant. Answer briefly."}]
    words = ["the", "cache", "key", "über", "naïve", "東京", "🙂", 'say "hi"', "a\\b", "line\nbreak", "x/y"]
    total = 0
    while total < size:
        content = " ".join(rnd.choice(words) for _ in range(rnd.randrange(5, 80)))
        messages.append({"role": rnd.choice(["user", "assistant"]), "content": content, "name": None})
        total += len(json.dumps(messages[-1], separators=(",", ":"))) + 1
    return {
        "model": "gpt-4o-mini",
        "messages": messages,
        "temperature": 0.7,
        "max_tokens": 1024,
        "stream": False,
        "user": "user-1234",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
    }


def test_large_bodies():
    rnd = random.Random(1)
    value = chat_body(rnd, 100_000)
    compact = json.dumps(value, separators=(",", ":")).encode()
    pretty = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).encode()
    shuffled = render(value, rnd)
    assert len(compact) >= 100_000
    canonical = sorted_dumps(value)
    for name in TWINS:
        twin = _load(name)
        for body in (compact, pretty, shuffled):
            assert twin.canonical_json(body, ()) == canonical
            assert key(twin, body, (b"user",)) == stream_key(b"J" + sorted_dumps(value, {b"user"}))
        assert key(twin, compact[:-1]) == stream_key(b"R" + compact[:-1])


# ---------------------------------------------------------------------------------------------
# Properties, and the twins against each other.

@PROPERTY_SETTINGS
@given(
    case=json_values.flatmap(lambda v: st.tuples(st.just(v), ignore_sets(v))),
    rnd=st.randoms(use_true_random=False),
)
@example(case=({"b": [{"c": "\x00"}], "a": 1}, (b"a",)), rnd=random.Random(0))
def test_canonical_form_of_any_rendering(case, rnd):
    """Whatever the whitespace, member order, escapes or overridden duplicates, the canonical text
    is json's sorted compact dump of the value, in both twins, and so is the key."""
    value, ignore = case
    body = render(value, rnd)
    expected = sorted_dumps(value, frozenset(ignore))
    for name in TWINS:
        twin = _load(name)
        assert twin.canonical_json(body, ignore) == expected
        assert key(twin, body, ignore) == stream_key(b"J" + expected)


@PROPERTY_SETTINGS
@given(value=int64_values, rnd=st.randoms(use_true_random=False))
def test_canonical_form_is_orjsons_sorted_dump(value, rnd):
    """Without floats (which orjson reformats) the canonical text is exactly orjson's OPT_SORT_KEYS
    output, string escapes included."""
    body = render(value, rnd)
    expected = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    for name in TWINS:
        assert _load(name).canonical_json(body, ()) == expected


@PROPERTY_SETTINGS
@given(value=objects, a=st.randoms(use_true_random=False), b=st.randoms(use_true_random=False))
def test_key_ignores_formatting(value, a, b):
    for name in TWINS:
        twin = _load(name)
        assert key(twin, render(value, a)) == key(twin, render(value, b, duplicates=False))


@PROPERTY_SETTINGS
@given(body=st.binary(max_size=64), ignore=st.lists(st.binary(max_size=3), max_size=3).map(tuple))
def test_twins_agree_on_any_bytes(body, ignore):
    assert outcome(_load("cython"), body, ignore) == outcome(_load("pure"), body, ignore)


@PROPERTY_SETTINGS
@given(body=json_like, ignore=st.sampled_from([(), (b"a",), (b"",), ("é".encode(), b"\n")]))
@example(body=b'{"a":1,"a":"\\ud800"}', ignore=())
@example(body=b'{"\\u00e9":"\\ud83d"}', ignore=("é".encode(),))
def test_twins_agree_on_json_like_text(body, ignore):
    assert outcome(_load("cython"), body, ignore) == outcome(_load("pure"), body, ignore)


# Pieces of string content, valid and not, short and long enough for the 8-byte scan.
STRING_PIECES = [
    b"a", b"hello world", b"0123456789abcdef", b" ", b"~", b"\x7f", b"\\n", b"\\t", b'\\"', b"\\\\", b"\\/",
    b"\\u00e9", b"\\u0000", b"\\ud83d\\ude00", b"\\ud83d", b"\\x", b"\xc3\xa9", b"\xe6\x9d\xb1",
    b"\xf0\x9f\x99\x82", b"\xc3", b"\xff", b"\xed\xa0\x80", b"\x01", b"\x1f", b'"', b"\\",
]
string_bodies = st.lists(st.sampled_from(STRING_PIECES), max_size=40).map(lambda p: b'"' + b"".join(p) + b'"')


@PROPERTY_SETTINGS
@given(body=string_bodies, as_key=st.booleans())
def test_twins_agree_on_strings(body, as_key):
    if as_key:
        body = b"{" + body + b':1,"k":' + body + b"}"
    assert outcome(_load("cython"), body, (b"k",)) == outcome(_load("pure"), body, (b"k",))


@PROPERTY_SETTINGS
@given(
    value=json_values,
    rnd=st.randoms(use_true_random=False),
    at=st.integers(0, 10**6),
    op=st.sampled_from(["delete", "insert", "replace"]),
    byte=st.sampled_from(b'{}[],:"\\ue0-.1\x00\x80\xed\xff'),
)
def test_twins_agree_on_damaged_json(value, rnd, at, op, byte):
    body = render(value, rnd)
    at %= len(body) + 1
    if op == "delete":
        body = body[:at] + body[at + 1:]
    elif op == "insert":
        body = body[:at] + bytes([byte]) + body[at:]
    else:
        body = body[:at] + bytes([byte]) + body[at + 1:]
    top = tuple(k.encode() for k in value)[:2] if isinstance(value, dict) else ()
    assert outcome(_load("cython"), body, top) == outcome(_load("pure"), body, top)
