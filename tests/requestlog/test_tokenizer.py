"""The token counter against tiktoken: same tokens for every text, both encodings, both twins.

tiktoken is the reference and runs offline from ../shared/tokenizers, set up exactly as that
folder's README says (a TIKTOKEN_CACHE_DIR holding each file under the sha1 of its download
address). The product itself reads only the copies in fastgw/data/tokenizers.

The compiled twin is never skipped: if the extension is not built the "cython" cases fail
(``python setup.py build_ext --inplace``).
"""
import hashlib
import importlib.machinery
import importlib.resources
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import fastgw
from fastgw.requestlog import tokenizer
from fastgw.requestlog.tokenizer import Encoding, bpe_twin, encoding_for_model

# The reference vocabularies for tiktoken: ../shared/tokenizers next to the project when it is there,
# else the package's own copies. Either way tiktoken checks each file against the hash it publishes
# for it (tiktoken_ext/openai_public.py) before using it, so the comparison never rests on our copy.
SHARED = Path(__file__).resolve().parents[3] / "shared" / "tokenizers"
VOCABS = SHARED if SHARED.is_dir() else Path(fastgw.__file__).parent / "data" / "tokenizers"
URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
NAMES = list(tokenizer.ENCODINGS)
TWINS = ["cython", "pure"]
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEXT_PROPERTY = settings(PROPERTY, max_examples=1000)


# ---------------------------------------------------------------------------------------------
# Fixtures: tiktoken offline, the vocabularies, one Encoding per (encoding, twin).

@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """tiktoken's encodings by name, read from a cache dir as ../shared/tokenizers/README.md says."""
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    for name in NAMES:
        shutil.copy(VOCABS / f"{name}.tiktoken", cache / hashlib.sha1(URL.format(name).encode()).hexdigest())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        import tiktoken

        # get_encoding reads the files now, while the variable is set; the registry keeps them.
        yield {name: tiktoken.get_encoding(name) for name in NAMES}


def tiktoken_published_sha256(name):
    """The SHA-256 tiktoken itself expects for ``name``'s vocabulary file, read from its source."""
    import tiktoken_ext.openai_public as published

    source = Path(published.__file__).read_text()
    found = re.search(rf'/{name}\.tiktoken",\s*expected_hash="([0-9a-f]{{64}})"', source)
    assert found, f"tiktoken publishes no hash for {name}"
    return found.group(1)


def load_twin(name):
    try:
        module = bpe_twin(pure=name == "pure")
    except ImportError as exc:
        pytest.fail(f"the compiled twin is not built ({exc}); run: python setup.py build_ext --inplace")
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES) if name == "cython" else (".py",)
    assert module.__file__.endswith(suffixes), module.__file__
    return module


@pytest.fixture(scope="session")
def ranks():
    return {name: tokenizer.load_ranks(name) for name in NAMES}


@pytest.fixture(scope="session")
def encoders(ranks):
    """The BytePairEncoder of each twin over each vocabulary: {(name, twin): encoder}."""
    return {(name, twin): load_twin(twin).BytePairEncoder(ranks[name]) for name in NAMES for twin in TWINS}


@pytest.fixture(scope="session")
def encodings(ranks):
    """encodings(name, twin) -> a cached Encoding built on that twin."""
    built = {}

    def get(name, twin):
        if (name, twin) not in built:
            built[name, twin] = Encoding(name, ranks[name], load_twin(twin))
        return built[name, twin]

    return get


def assert_same(encoding, reference, text):
    expected = reference[encoding.name].encode_ordinary(text)
    assert encoding.encode(text) == expected, repr(text[:200])
    assert encoding.count(text) == len(expected)


# ---------------------------------------------------------------------------------------------
# What is shipped, and that it is tiktoken's.

def test_patterns_and_vocabularies_are_tiktokens(reference, ranks):
    for name in NAMES:
        assert tokenizer._PATTERNS[name] == reference[name]._pat_str
        assert ranks[name] == reference[name]._mergeable_ranks
    assert len(ranks["o200k_base"]) == 199998 and len(ranks["cl100k_base"]) == 100256


def test_vocabularies_ship_in_the_package_with_their_licence():
    folder = importlib.resources.files(fastgw).joinpath("data/tokenizers")
    for name in NAMES:
        shipped = folder.joinpath(f"{name}.tiktoken").read_bytes()
        assert hashlib.sha256(shipped).hexdigest() == tiktoken_published_sha256(name)
        if SHARED.is_dir():
            assert shipped == (SHARED / f"{name}.tiktoken").read_bytes()
        assert hashlib.sha256(shipped).hexdigest() == tokenizer._SHA256[name]
    licence = folder.joinpath("LICENSE-tiktoken").read_text()
    assert "MIT License" in licence and "Copyright (c) 2022 OpenAI, Shantanu Jain" in licence
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in licence
    source = Path(tokenizer.__file__).read_text()
    assert "shared" not in source  # the product never reads ../shared


def test_a_damaged_vocabulary_is_refused(monkeypatch):
    monkeypatch.setitem(tokenizer._SHA256, "cl100k_base", "0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        tokenizer.load_ranks("cl100k_base")


def test_unknown_encoding():
    with pytest.raises(ValueError, match="unknown encoding 'p50k_base'"):
        tokenizer.get_encoding("p50k_base")
    with pytest.raises(ValueError, match="unknown encoding"):
        tokenizer.load_ranks("r50k_base")


# ---------------------------------------------------------------------------------------------
# The corpus: every kind of text the brief names, both encodings, both twins.

CORPUS = {
    "empty": "",
    "prose": (
        "The quick brown fox jumps over the lazy dog. It's a truth universally acknowledged, that a "
        "single man in possession of a good fortune, must be in want of a wife.\n\nSecond paragraph: "
        "\"quoted\", (parenthesised) and -- dashed -- text; semi-colons; colons: done."
    ),
    "python": (
        "import os\n\n\nclass Pool:\n    \"\"\"A pool.\"\"\"\n\n    def __init__(self, size: int = 10) -> None:\n"
        "        self._free: list[int] = [i for i in range(size)]\n        if not self._free:\n"
        "            raise ValueError(f\"size {size!r} must be > 0\")  # why\n\n\tdef tabbed(self):\n"
        "\t\treturn {'a': 1, \"b\": [2, 3]}\n"
    ),
    "javascript": (
        "export async function fetchJson(url, { retries = 3 } = {}) {\n  for (let i = 0; i < retries; i++) {\n"
        "    const res = await fetch(url);\n    if (res.ok) return res.json();\n  }\n"
        "  throw new Error(`failed: ${url}`);\n}\n// => arrow, !== strict, ?. optional, ?? nullish\n"
    ),
    "c": (
        "#include <stdio.h>\n\nstatic int count(const char *s, size_t n)\n{\n\tint k = 0;\n"
        "\tfor (size_t i = 0; i < n; ++i) {\n\t\tif (s[i] == '\\n') k++;\n\t}\n\treturn k; /* lines */\n}\n"
    ),
    "chinese": "我们今天讨论的是大语言模型的网关。它需要统计令牌数量，以便计费和限流！「引号」、《书名》……",
    "japanese": "日本語のテキストです。カタカナとひらがな、そして漢字が混ざっています。ｶﾀｶﾅ（半角）も。",
    "korean": "한국어 텍스트입니다. 게이트웨이를 통해 요청을 보냅니다! 띄어쓰기도 있습니다.",
    "emoji": (
        "Hi 👋 👋🏻👋🏼👋🏽👋🏾👋🏿 family 👨‍👩‍👧‍👦 couple 👩‍❤️‍💋‍👨 coder 🧑🏿‍💻 flags 🇯🇵🇺🇸🏳️‍🌈🏴‍☠️ "
        "keycaps 1️⃣#️⃣ hearts ❤️‍🔥 ✅❌ 🚀🚀🚀"
    ),
    "whitespace": "a  b   c\t\td\n\ne\r\nf \t \n g    \n\n\n   \t\t\n \u00a0\u2003\u3000x\u2028y\x85z\x0b\x0c   ",
    "trailing whitespace": "line with trailing spaces   \nand tabs\t\t\n\n   ",
    "only whitespace": " \t\n \n\n\t   ",
    "numbers": "1 12 123 1234 12345 3.14159 -42 1e10 0x1F 1,000,000 " + "9876543210" * 8 + " ٣٤٥ ⅷ ½ 𝟙𝟚𝟛 ",
    "contractions": "it's I'M you're they'LL we've she'd don't CAN'T 'tis 'S 'Re o'clock rock'n'roll x'ſ",
    "punctuation": "!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}} <<< >>> /// \\\\\\ |||",
    "mixed scripts": "Latin Ελληνικά Кириллица עברית العربية हिन्दी ไทย 中文 日本語 한국어 ქართული Ազգ",
    "combining marks": "e\u0301 n\u0303 a\u0308\u0304 Z\u0351\u0362\u0338 क्षि ँ",
    "special tokens as text": "<|endoftext|> <|fim_prefix|>x<|fim_middle|>y<|fim_suffix|> <|endofprompt|>",
    "json": '{"model":"gpt-4o","messages":[{"role":"user","content":"Hello, world!\\n"}],"stream":true}',
    "urls and paths": "https://example.com/a/b?c=d&e=f#g /usr/local/bin/python3 C:\\Users\\x\\file.txt //",
    "long repeated letters": "a" * 3000 + " " + "ab" * 700,
    "long whitespace": " " * 5000 + "\n" * 300 + "\t" * 100,
    "long digits": "7" * 2000,
    "base64 blob": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg==" * 8,
    "lone surrogates": "a\ud800b \udfff c\ud83d\ude00d \ud800\udc00",
    "unicode 17 letters": "\U000323b0's \U00011db0\U00011db1 X\U0001df2b's \u0558'S 1\U00012550 \u1acf'd",
    "unassigned code points": "\u0378\u0379 \U000e0080 \U0010fffe \ufdd0's",
}


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sample", list(CORPUS))
def test_corpus(reference, encodings, name, twin, sample):
    assert_same(encodings(name, twin), reference, CORPUS[sample])


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("name", NAMES)
def test_whole_corpus_at_once(reference, encodings, name, twin):
    assert_same(encodings(name, twin), reference, "\n".join(CORPUS.values()))


# ---------------------------------------------------------------------------------------------
# Generated text.

INTERESTING = list(
    " \t\n\r\x0b\x0c\x85\xa0\u2028\u3000'sStTdDmMlLrReEvVſ/0123456789aZéÉ中あア한😀🏽\u200d\ufe0f\u0301"
    "\U000323b0\U00011db0\U00012550\ufdd0.!?-_(){}[]<>\"`~@#$%^&*+=|\\;:,"
)
CHARACTERS = st.one_of(st.characters(exclude_categories=()), st.sampled_from(INTERESTING))
TEXTS = st.one_of(
    st.text(CHARACTERS, max_size=120),
    st.binary(max_size=200).map(lambda data: data.decode("utf-8", errors="replace")),
)


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("name", NAMES)
@TEXT_PROPERTY
@given(text=TEXTS)
@example(text="'s")
@example(text=" \n \n")
@example(text="\ud83d")
def test_generated_text(reference, encodings, name, twin, text):
    assert_same(encodings(name, twin), reference, text)


# ---------------------------------------------------------------------------------------------
# The BPE twins against each other, and against tiktoken's own merge loop (merge_scan).

PIECES = st.one_of(
    st.binary(max_size=300),
    st.text("ab ", max_size=300).map(str.encode),  # long runs of merges and equal-rank ties
    st.text("abcdefghijklmnopqrstuvwxyz", min_size=60, max_size=400).map(str.encode),
    st.text(CHARACTERS, max_size=100).map(lambda text: text.encode("utf-8", "replace")),
)


@pytest.mark.parametrize("name", NAMES)
@PROPERTY
@given(piece=PIECES)
@example(piece=b"")
@example(piece=b"a" * 65)
@example(piece=b" " * 1000)
def test_twins_agree_on_pieces(ranks, encoders, name, piece):
    vocabulary = ranks[name]
    pure_bpe = load_twin("pure")
    expected = pure_bpe.merge_scan(vocabulary, piece) if piece not in vocabulary else [vocabulary[piece]]
    assert pure_bpe.merge_heap(vocabulary, piece) == pure_bpe.merge_scan(vocabulary, piece)
    for twin in TWINS:
        encoder = encoders[name, twin]
        assert encoder.encode_piece(piece) == expected
        assert encoder.count_piece(piece) == len(expected)
        assert encoder.count_pieces([piece, piece]) == 2 * len(expected)


@pytest.mark.parametrize("twin", TWINS)
def test_cache_changes_nothing(reference, ranks, twin):
    module = load_twin(twin)
    text = tokenizer._without_surrogates("\n".join(CORPUS.values()) * 2)
    pieces = Encoding("o200k_base", ranks["o200k_base"], module)._split(text)
    expected = len(reference["o200k_base"].encode_ordinary(text))
    for cache_size in (0, 1, 7, module.DEFAULT_CACHE_SIZE, 100_000):
        encoder = module.BytePairEncoder(ranks["o200k_base"], cache_size=cache_size)
        assert encoder.count_pieces(pieces) == encoder.count_pieces(pieces) == expected
        assert len(encoder.encode_pieces(pieces)) == expected
        assert "n_tokens=199998" in repr(encoder) and encoder.cache_size == cache_size


def outcome(call):
    try:
        return "ok", call()
    except Exception as exc:  # noqa: BLE001 - the twins must raise the same thing
        return type(exc).__name__, str(exc)


BAD_VOCABULARIES = [
    [("a", 1)],
    {"a": 1},
    {b"": 1},
    {b"a": -1},
    {b"a": 2**32 - 1},
    {b"a": True},
    {b"a": 1.0},
    {bytes([b]): b for b in range(255)},
    {bytes([b]): b for b in range(1, 256)},
]


@pytest.mark.parametrize("bad", BAD_VOCABULARIES, ids=range(len(BAD_VOCABULARIES)))
def test_twins_refuse_the_same_vocabularies(bad):
    results = [outcome(lambda: load_twin(t).BytePairEncoder(bad)) for t in TWINS]
    assert results[0] == results[1] and results[0][0] in ("TypeError", "ValueError"), results


def test_twins_refuse_the_same_arguments():
    vocabulary = {bytes([b]): b for b in range(256)} | {b"ab": 256}
    calls = [
        lambda m: m.BytePairEncoder(vocabulary, cache_size=-1),
        lambda m: m.BytePairEncoder(vocabulary, cache_size="7"),
        lambda m: m.BytePairEncoder(vocabulary).encode_piece("ab"),
        lambda m: m.BytePairEncoder(vocabulary).count_piece(bytearray(b"ab")),
        lambda m: m.BytePairEncoder(vocabulary).encode_pieces(["ab", 1]),
        lambda m: m.BytePairEncoder(vocabulary).count_pieces(["ab", None]),
        lambda m: m.BytePairEncoder(vocabulary).count_pieces(["a\udc80"]),
        lambda m: m.CodePointSet([(5, 4)]),
        lambda m: m.CodePointSet([(0, 0x110000)]),
    ]
    for call in calls:
        results = [outcome(lambda: call(load_twin(t))) for t in TWINS]
        assert results[0] == results[1] and results[0][0] != "ok", results
    small = [load_twin(t).BytePairEncoder(vocabulary) for t in TWINS]
    for encoder in small:
        assert encoder.encode_pieces(["ab", b"ab", "ba", b""]) == [256, 256, 98, 97]
        assert encoder.count_pieces([b"abab", "abba"]) == 5


@pytest.mark.parametrize("twin", TWINS)
@given(text=st.text(CHARACTERS, max_size=50))
@example(text="\U000323b0")
@example(text="a\u0558")
@example(text="ÿ")
def test_code_point_set(twin, text):
    module = load_twin(twin)
    ranges = [(0xFF, 0xFF), (0x0558, 0x0558), (0x323B0, 0x33479), (0x1F600, 0x1F600)]
    found = module.CodePointSet(ranges).intersects(text)
    assert found == any(first <= ord(c) <= last for c in text for first, last in ranges)
    assert module.CodePointSet([]).intersects(text) is False
    assert module.CodePointSet([(0x1000, 0x1000)]).min == 0x1000


# ---------------------------------------------------------------------------------------------
# Every code point. The regex module's Unicode tables are newer than tiktoken's (16.0); the
# tokenizer's _NEWER_THAN_UNICODE_16 repairs the difference. These find any code point on which
# the two still disagree, and fail when a regex upgrade moves more of them.

ALL_CODE_POINTS = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def disagreements(encoding, reference, context):
    """The code points c for which context.format(c=c) encodes differently, found chunk by chunk."""
    expected = reference[encoding.name].encode_ordinary
    found = set()
    for start in range(0, len(ALL_CODE_POINTS), 4096):
        chunk = ALL_CODE_POINTS[start:start + 4096]
        text = "|".join(context.format(c=c) for c in chunk)
        if encoding.encode(text) != expected(text):
            found.update(ord(c) for c in chunk if encoding.encode(context.format(c=c)) != expected(context.format(c=c)))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_code_point_agrees(reference, encodings, name):
    encoding = encodings(name, "cython")  # the split is shared: one twin covers it
    assert disagreements(encoding, reference, "{c}'s") == set()
    assert disagreements(encoding, reference, "A{c}b {c}{c}1\n") == set()


@pytest.mark.slow
def test_the_repair_table_is_exactly_the_difference(reference, ranks):
    encoding = Encoding("o200k_base", ranks["o200k_base"], load_twin("cython"))
    encoding._newer = load_twin("cython").CodePointSet([])  # repair off
    table = {c for first, last in tokenizer._NEWER_THAN_UNICODE_16 for c in range(first, last + 1)}
    # "'s" after a letter joins it, after an unassigned code point it does not: that tells them apart.
    assert disagreements(encoding, reference, "{c}'s") == table


# ---------------------------------------------------------------------------------------------
# The module's surface.

MODELS = {
    "o200k_base": [
        "gpt-4o", "gpt-4o-mini-2024-07-18", "chatgpt-4o-latest", "gpt-4.1-nano", "gpt-4.5-preview", "gpt-5",
        "gpt-5-mini", "o1", "o1-preview", "o3-mini", "o4-mini", "gpt-oss-120b", "ft:gpt-4o-mini:org::abc",
        "openai/gpt-4o", "GPT-4O",
        # not OpenAI's: approximated with o200k_base
        "claude-sonnet-4-5", "gemini-2.5-pro", "llama-3.1-70b", "",
    ],
    "cl100k_base": [
        "gpt-4", "gpt-4-0613", "gpt-4-turbo", "gpt-4-32k", "gpt-3.5-turbo", "gpt-35-turbo", "azure/gpt-4",
        "text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002", "ft:gpt-3.5-turbo:org::x",
    ],
}


@pytest.mark.parametrize(("model", "expected"), [(m, name) for name, models in MODELS.items() for m in models])
def test_encoding_for_model(model, expected):
    assert encoding_for_model(model) == expected


def test_get_encoding_loads_once_per_process(reference):
    results = []
    threads = [threading.Thread(target=lambda: results.append(tokenizer.get_encoding("cl100k_base"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and all(result is results[0] for result in results)
    assert tokenizer.get_encoding("cl100k_base") is results[0]
    assert repr(results[0]).startswith("<Encoding 'cl100k_base' n_vocab=100256")
    text = CORPUS["prose"]
    assert tokenizer.count_tokens(text, "gpt-4") == len(reference["cl100k_base"].encode_ordinary(text))
    assert tokenizer.count_tokens(text, "gpt-4o") == len(reference["o200k_base"].encode_ordinary(text))


def test_bpe_twin_leaves_the_packages_choice_alone():
    import fastgw._native as package

    sentinel = object()
    saved = package.__dict__.get("bpe", sentinel)
    package.bpe = sentinel
    try:
        assert load_twin("cython").__name__ == "fastgw._native.bpe"
        assert package.bpe is sentinel
    finally:
        if saved is sentinel:
            del package.bpe
        else:
            package.bpe = saved


@pytest.mark.parametrize(("pure", "expected"), [("1", "pure"), ("0", "cython")])
def test_fastgw_pure_chooses_the_twin(pure, expected):
    code = "from fastgw.requestlog import tokenizer as t; print(t.IMPLEMENTATION, t._TWIN.__name__)"
    env = {**os.environ, "FASTGW_PURE": pure}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    implementation, module = out.split()
    assert implementation == expected
    assert module == ("fastgw._native._pure.bpe" if expected == "pure" else "fastgw._native.bpe")
