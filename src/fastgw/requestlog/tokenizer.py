"""Exact token counts for OpenAI's o200k_base and cl100k_base encodings, offline.

Why: when a provider reports no usage (a stream cut short, an OpenAI-compatible server that
omits it), the logging exporter still records how many tokens went each way. The counts equal
``tiktoken``'s ``encode_ordinary`` on every input, from the vocabularies this package ships
(``fastgw/data/tokenizers``, MIT, published by OpenAI with tiktoken); nothing is downloaded.
Models that are not OpenAI's are counted with o200k_base: an approximation, since each vendor
has its own tokenizer, but the closest one we can ship (see ``encoding_for_model``).

How, in three steps that mirror tiktoken:

1. Split the text with the encoding's own pre-tokenisation regex (the pattern strings below are
   tiktoken's, character for character) using the ``regex`` module.
2. Byte-pair encode each piece: ``fastgw._native.bpe`` in C, or its pure twin (FASTGW_PURE=1
   forces the twin; otherwise the compiled module when it is built).
3. A text with a lone surrogate cannot be UTF-8: like tiktoken, round-trip it through UTF-16
   with "replace" and encode that instead.

One difference is repaired rather than copied. tiktoken's Rust regex classifies characters with
Unicode 16.0's tables (tiktoken 0.14); the ``regex`` module's are newer, so some 17,500 code
points added since (CJK and Tangut ideographs, new scripts' letters, marks and digits) are
letters, marks or numbers to it and unassigned to tiktoken. That changes where a text splits
(tiktoken cuts "X's" into "X" + "'s" when X is unassigned), and so the tokens. A text holding
any of them is split as if each were U+FDD0 (a noncharacter, unassigned in every version) and
cut at the same places in the original text, whose bytes are what gets encoded.
``_NEWER_THAN_UNICODE_16`` lists them; tests/requestlog/test_tokenizer.py checks every code
point against tiktoken, so a ``regex`` release that moves more fails the tests, not the counts.
"""
from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.resources
import os
import threading
from types import ModuleType
from typing import Any

import regex

__all__ = [
    "ENCODINGS", "IMPLEMENTATION", "Encoding", "bpe_twin", "count_tokens", "encoding_for_model",
    "get_encoding", "load_ranks",
]

# tiktoken_ext/openai_public.py, verbatim: the split rules are part of each encoding's definition.
_PATTERNS = {
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",  # noqa: E501
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",  # noqa: E501
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
}

# The sha256 tiktoken expects of each vocabulary file: a damaged file would count wrong silently.
_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
ENCODINGS = tuple(_PATTERNS)

# Code points (first, last) that the regex module's tables make letters (L), marks (M) or
# numbers (N) and Unicode 16.0, tiktoken's tables, leaves unassigned. Found by comparing the
# two over all of Unicode (the test does it again); all are unassigned in Python's unicodedata.
_NEWER_THAN_UNICODE_16 = (
    (0x00558, 0x00558), (0x0058B, 0x0058C), (0x005C8, 0x005C9), (0x0088F, 0x0088F), (0x00B53, 0x00B54),
    (0x00C5C, 0x00C5C), (0x00CDC, 0x00CDC), (0x01ACF, 0x01AF0), (0x0208F, 0x0208F), (0x0209D, 0x0209F),
    (0x0A7CE, 0x0A7CF), (0x0A7D2, 0x0A7D2), (0x0A7D4, 0x0A7D4), (0x0A7DD, 0x0A7DD), (0x0A7E2, 0x0A7E2),
    (0x0A7F1, 0x0A7F1), (0x0AB6C, 0x0AB6D), (0x107BB, 0x107BF), (0x10940, 0x10959), (0x10EC5, 0x10EC7),
    (0x10ECB, 0x10ECF), (0x10ED9, 0x10EEE), (0x10EF0, 0x10EFB), (0x11B0A, 0x11B0A), (0x11B60, 0x11B67),
    (0x11DB0, 0x11DDB), (0x11DE0, 0x11DE9), (0x11DF0, 0x11DF1), (0x1246F, 0x1246F), (0x12475, 0x1247F),
    (0x12550, 0x12686), (0x16EA0, 0x16EB8), (0x16EBB, 0x16ED3), (0x16FF2, 0x16FF6), (0x187F8, 0x187FF),
    (0x18CD6, 0x18CDA), (0x18D09, 0x18D20), (0x18D80, 0x18DF2), (0x18E00, 0x19191), (0x191A0, 0x191D2),
    (0x1B123, 0x1B128), (0x1B168, 0x1B168), (0x1D127, 0x1D128), (0x1D250, 0x1D252), (0x1D25B, 0x1D25C),
    (0x1D25F, 0x1D25F), (0x1D280, 0x1D281), (0x1D6A6, 0x1D6A6), (0x1DF1F, 0x1DF24), (0x1DF2B, 0x1DF81),
    (0x1DF90, 0x1DF96), (0x1DFCD, 0x1DFFF), (0x1E6C0, 0x1E6DE), (0x1E6E0, 0x1E6F5), (0x1E6FE, 0x1E6FF),
    (0x2B73A, 0x2B73F), (0x2B81E, 0x2B81E), (0x2CEA2, 0x2CEAD), (0x323B0, 0x33479), (0x3D000, 0x3FC3F),
)
_STAND_IN = "\ufdd0"  # a noncharacter: no Unicode version will ever make it a letter
_NEWER = regex.compile("[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in _NEWER_THAN_UNICODE_16) + "]")

# Model name prefixes, after any "provider/" and "ft:" are removed (tiktoken's model.py agrees).
_O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "gpt-oss", "o1", "o3", "o4")
_CL100K_PREFIXES = ("gpt-4", "gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada-002",
                    "davinci-002", "babbage-002")


def encoding_for_model(model: str) -> str:
    """The encoding of an OpenAI model name; "o200k_base" for any other model.

    gpt-4o*, gpt-4.1*, gpt-4.5*, gpt-5*, o1*/o3*/o4*, gpt-oss* -> o200k_base (gpt-oss's
    o200k_harmony only adds special tokens); gpt-4*, gpt-3.5* (Azure's gpt-35*),
    text-embedding-3*, text-embedding-ada-002 -> cl100k_base. A "provider/" prefix
    (``openai/gpt-4o``) and a fine-tune's "ft:" are looked through. Non-OpenAI models (Claude,
    Gemini, Llama, ...) are approximated with o200k_base, the most recent general vocabulary.
    """
    name = model.strip().lower().rsplit("/", 1)[-1].removeprefix("ft:")
    if name.startswith(_O200K_PREFIXES):
        return "o200k_base"
    if name.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return "o200k_base"


def bpe_twin(pure: bool) -> ModuleType:
    """The ``bpe`` module of one twin; ImportError when the compiled one is not built.

    Importing ``fastgw._native.bpe`` binds the package attribute ``bpe`` to it (see
    _native/__init__.py); whatever the package had chosen is put back.
    """
    if pure:
        return importlib.import_module("fastgw._native._pure.bpe")
    package = importlib.import_module("fastgw._native")
    missing = object()
    chosen = package.__dict__.get("bpe", missing)
    try:
        return importlib.import_module("fastgw._native.bpe")
    finally:
        if chosen is not missing:
            package.bpe = chosen  # type: ignore[attr-defined]


def _chosen_twin() -> ModuleType:
    """_native/__init__.py's rule: FASTGW_PURE=1 forces the twin, else compiled when built."""
    if os.environ.get("FASTGW_PURE") == "1":
        return bpe_twin(pure=True)
    try:
        return bpe_twin(pure=False)
    except ImportError:
        return bpe_twin(pure=True)


_TWIN = _chosen_twin()
IMPLEMENTATION = "pure" if _TWIN.__name__.startswith("fastgw._native._pure") else "cython"


def load_ranks(name: str) -> dict[bytes, int]:
    """The vocabulary of an encoding (token bytes -> rank), read from the shipped file.

    Raises ValueError for an unknown name or a file whose sha256 is not tiktoken's.
    """
    if name not in _SHA256:
        raise ValueError(f"unknown encoding {name!r} (there are {', '.join(ENCODINGS)})")
    resource = importlib.resources.files("fastgw").joinpath(f"data/tokenizers/{name}.tiktoken")
    data = resource.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != _SHA256[name]:
        raise ValueError(f"{resource}: sha256 {digest}, expected {_SHA256[name]}")
    # The format: one "base64(token bytes) rank" line per token (tiktoken's load_tiktoken_bpe).
    lines = (line.split() for line in data.splitlines() if line)
    return {base64.b64decode(token): int(rank) for token, rank in lines}


class Encoding:
    """One encoding: its regex split plus a BytePairEncoder over its vocabulary.

    Build it with ``get_encoding`` (once per process); the constructor is for tests and
    benchmarks that want a given twin (``bpe_twin(pure)``).
    """

    __slots__ = ("name", "pat_str", "n_vocab", "_pattern", "_encoder", "_newer")

    def __init__(
        self,
        name: str,
        ranks: dict[bytes, int],
        twin: ModuleType | None = None,
        cache_size: int | None = None,
    ) -> None:
        """``twin`` None: the chosen one; ``cache_size`` None: the twin's DEFAULT_CACHE_SIZE."""
        if name not in _PATTERNS:
            raise ValueError(f"unknown encoding {name!r} (there are {', '.join(ENCODINGS)})")
        twin = _TWIN if twin is None else twin
        self.name = name
        self.pat_str = _PATTERNS[name]
        self._pattern = regex.compile(self.pat_str)
        size = twin.DEFAULT_CACHE_SIZE if cache_size is None else cache_size
        self._encoder: Any = twin.BytePairEncoder(ranks, cache_size=size)
        self._newer: Any = twin.CodePointSet(_NEWER_THAN_UNICODE_16)
        self.n_vocab: int = self._encoder.n_tokens

    def __repr__(self) -> str:
        return f"<Encoding {self.name!r} n_vocab={self.n_vocab} encoder={self._encoder!r}>"

    def count(self, text: str) -> int:
        """The number of tokens tiktoken's ``encode_ordinary(text)`` returns."""
        try:
            return int(self._encoder.count_pieces(self._split(text)))
        except UnicodeEncodeError:
            return int(self._encoder.count_pieces(self._split(_without_surrogates(text))))

    def encode(self, text: str) -> list[int]:
        """The tokens of ``text``, special-token text included as ordinary text (encode_ordinary)."""
        try:
            return list(self._encoder.encode_pieces(self._split(text)))
        except UnicodeEncodeError:
            return list(self._encoder.encode_pieces(self._split(_without_surrogates(text))))

    def _split(self, text: str) -> list[str]:
        """The pieces of ``text``, split as tiktoken splits them."""
        if not self._newer.intersects(text):  # one pass, in C for the compiled twin: the usual case
            return self._pattern.findall(text)  # type: ignore[no-any-return]
        # Split a copy in which each post-16.0 character is the stand-in (one code point for
        # one, so offsets agree), and cut the original at the same places.
        stand_in = _NEWER.sub(_STAND_IN, text)
        return [text[m.start():m.end()] for m in self._pattern.finditer(stand_in)]


def _without_surrogates(text: str) -> str:
    """tiktoken's repair (core.py, encode_ordinary): pairs join, lone surrogates become U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


_LOADED: dict[str, Encoding] = {}
_LOADING = threading.Lock()


def get_encoding(name: str) -> Encoding:
    """The process's one Encoding of ``name`` ("o200k_base" or "cl100k_base"), loaded on first use.

    The first call reads and checks the vocabulary and builds the tables (~0.2 s for o200k_base);
    later calls are a dict lookup. Raises ValueError for an unknown name.
    """
    encoding = _LOADED.get(name)
    if encoding is None:
        with _LOADING:
            encoding = _LOADED.get(name)
            if encoding is None:
                encoding = _LOADED[name] = Encoding(name, load_ranks(name))
    return encoding


def count_tokens(text: str, model: str) -> int:
    """The tokens of ``text`` for ``model`` (see encoding_for_model for non-OpenAI models)."""
    return get_encoding(encoding_for_model(model)).count(text)

