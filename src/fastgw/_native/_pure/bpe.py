"""Pure-Python twin of ``fastgw._native.bpe`` (the contract is ``bpe.pyi``).

It serves when the extension is not built and is the oracle the tests hold the compiled twin to.
``merge_scan`` is tiktoken's own merge loop (``_byte_pair_merge`` in its ``src/lib.rs``) written
out in Python, step for step; the token lists it gives are the definition of a correct result.

Rules the contract leaves open, applied identically by both twins:

* BPE merges, at every step, the adjacent pair whose concatenated bytes have the lowest rank, the
  leftmost one when the same rank occurs twice ("aaaa" merges at 0 first). A pair whose bytes are
  not in the vocabulary is never merged.
* A piece longer than ``LONG_PIECE`` bytes is merged with a heap (``merge_heap``): the same
  choices, in O(n log n) instead of tiktoken's O(n * merges), so one pathological piece (a
  megabyte of one letter, a long run of spaces) cannot stall the log exporter. It pops the
  smallest (rank, start), which is the leftmost lowest rank, and skips entries whose pair has
  changed since they were pushed.
* The vocabulary must hold all 256 single bytes (so every final part is a token) and ranks must
  fit in 0 .. 2**32 - 2 (tiktoken's u32, minus the "no rank" marker). Otherwise ValueError.
* An empty piece has no tokens. A ``str`` piece is its UTF-8 bytes; a lone surrogate in it raises
  UnicodeEncodeError (the caller repairs the text the way tiktoken does and tries again).

The cache: most pieces are a whole token (one lookup: the vocabulary is the cache, as tiktoken's
notes put it), so only pieces that need merging are cached, up to ``cache_size`` of them (then
the dict is cleared). A gateway sees the same rare words again and again (system prompts,
identifiers in code), and a merge in Python costs far more than a dict lookup: the cache makes
this twin's count 1.6x faster on bench_tokenizer.py's corpus, and ~4% slower on text in which no
rare piece repeats. The compiled twin, whose merges are cheap, leaves it off by default.
"""
from __future__ import annotations

import heapq
import re
from collections.abc import Iterable

__all__ = [
    "CACHE_MAX_PIECE", "DEFAULT_CACHE_SIZE", "LONG_PIECE", "MAX_RANK", "BytePairEncoder", "CodePointSet",
    "merge_heap", "merge_scan",
]

MAX_RANK = 0xFFFFFFFE  # the largest rank a vocabulary may use; 0xFFFFFFFF means "no rank"
LONG_PIECE = 64  # pieces longer than this (in bytes) are merged by merge_heap
CACHE_MAX_PIECE = 256  # longer pieces are never cached (rarely repeated, costly to keep)
DEFAULT_CACHE_SIZE = 4096
_NO_RANK = 0xFFFFFFFF


def _check_ranks(ranks: dict[bytes, int]) -> None:
    """The vocabulary rules both twins enforce, with the same messages."""
    if not isinstance(ranks, dict):
        raise TypeError(f"ranks must be a dict of bytes to int, not {type(ranks).__name__}")
    for token, rank in ranks.items():
        if type(token) is not bytes or not token:
            raise ValueError(f"token {token!r} is not a non-empty bytes")
        if type(rank) is not int or not 0 <= rank <= MAX_RANK:
            raise ValueError(f"rank {rank!r} of token {token!r} is not an int in 0..{MAX_RANK}")
    missing = [b for b in range(256) if bytes((b,)) not in ranks]
    if missing:
        raise ValueError(f"the vocabulary lacks {len(missing)} single bytes, the first {missing[0]:#04x}")


def merge_scan(ranks: dict[bytes, int], piece: bytes) -> list[int]:
    """tiktoken's merge loop: the oracle. ``parts`` holds [start, rank of the pair starting here]."""
    if len(piece) < 2:
        return [ranks[piece]] if piece else []
    get = ranks.get
    parts = [[i, get(piece[i:i + 2], _NO_RANK)] for i in range(len(piece) - 1)]
    parts.append([len(piece) - 1, _NO_RANK])
    parts.append([len(piece), _NO_RANK])

    def rank_after_merge(i: int) -> int:
        # parts[i + 1] is about to be removed, so the pair at i will end at parts[i + 3].
        if i + 3 < len(parts):
            return get(piece[parts[i][0]:parts[i + 3][0]], _NO_RANK)
        return _NO_RANK

    while True:
        min_rank, i = _NO_RANK, -1
        for j in range(len(parts) - 1):
            if parts[j][1] < min_rank:
                min_rank, i = parts[j][1], j
        if min_rank == _NO_RANK:
            break
        if i > 0:
            parts[i - 1][1] = rank_after_merge(i - 1)
        parts[i][1] = rank_after_merge(i)
        del parts[i + 1]
    return [ranks[piece[parts[j][0]:parts[j + 1][0]]] for j in range(len(parts) - 1)]


def merge_heap(ranks: dict[bytes, int], piece: bytes) -> list[int]:
    """The same merges as merge_scan, found with a heap of (rank, start, end) pairs.

    ``nxt[i]`` is where the part starting at i ends (-1 once i is no longer a part start);
    ``prv[i]`` is where the part ending at i starts. An entry is current while its start is a
    part start whose right neighbour still ends at ``end``: parts only ever grow, so then the
    pair is exactly the one that was pushed.
    """
    n = len(piece)
    if n < 2:
        return [ranks[piece]] if piece else []
    get = ranks.get
    nxt = list(range(1, n + 2))
    prv = list(range(-1, n))
    heap = [(r, i, i + 2) for i in range(n - 1) if (r := get(piece[i:i + 2])) is not None]
    heapq.heapify(heap)
    while heap:
        _, start, end = heapq.heappop(heap)
        mid = nxt[start]
        if mid == -1 or mid >= n or nxt[mid] != end:
            continue  # stale: one of the two parts has merged since the push
        nxt[start], nxt[mid], prv[end] = end, -1, start
        if start > 0:
            left = prv[start]
            if (r := get(piece[left:end])) is not None:
                heapq.heappush(heap, (r, left, end))
        if end < n:
            right = nxt[end]
            if (r := get(piece[start:right])) is not None:
                heapq.heappush(heap, (r, start, right))
    tokens = []
    i = 0
    while i < n:
        tokens.append(ranks[piece[i:nxt[i]]])
        i = nxt[i]
    return tokens


class BytePairEncoder:
    """Byte-pair encoding of pre-tokenised pieces over one vocabulary (token bytes -> rank)."""

    __slots__ = ("_ranks", "_cache", "n_tokens", "cache_size")

    def __init__(self, ranks: dict[bytes, int], cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        if type(cache_size) is not int or cache_size < 0:
            raise ValueError(f"cache_size must be an int >= 0, not {cache_size!r}")
        _check_ranks(ranks)
        self._ranks = ranks
        self._cache: dict[bytes, tuple[int, ...]] | None = {} if cache_size else None  # None: no cache
        self.n_tokens = len(ranks)
        self.cache_size = cache_size

    def __repr__(self) -> str:
        cached = len(self._cache) if self._cache is not None else 0
        return f"<BytePairEncoder pure n_tokens={self.n_tokens} cached={cached}/{self.cache_size}>"

    def encode_piece(self, piece: bytes) -> list[int]:
        """The tokens of one piece; a piece that is a token is one lookup."""
        if type(piece) is not bytes:
            raise TypeError(f"piece must be bytes, not {type(piece).__name__}")
        rank = self._ranks.get(piece)
        if rank is not None:
            return [rank]
        return list(self._merged(piece))

    def count_piece(self, piece: bytes) -> int:
        """len(encode_piece(piece))."""
        if type(piece) is not bytes:
            raise TypeError(f"piece must be bytes, not {type(piece).__name__}")
        return 1 if piece in self._ranks else len(self._merged(piece))

    def encode_pieces(self, pieces: list[str | bytes]) -> list[int]:
        """The tokens of every piece, in order."""
        ranks = self._ranks
        tokens: list[int] = []
        for piece in pieces:
            data = _utf8(piece)
            rank = ranks.get(data)
            if rank is not None:
                tokens.append(rank)
            else:
                tokens += self._merged(data)
        return tokens

    def count_pieces(self, pieces: list[str | bytes]) -> int:
        """The number of tokens of all pieces: the one call the exporter makes per text."""
        ranks = self._ranks
        try:  # the usual case, all str: str.encode runs in C
            misses = [data for data in map(str.encode, pieces) if data not in ranks]
        except TypeError:  # a bytes piece (or a wrong type, which _utf8 reports)
            misses = [data for data in map(_utf8, pieces) if data not in ranks]
        # Every piece is at least one token; each miss adds its parts beyond the first.
        return len(pieces) + sum(len(self._merged(data)) - 1 for data in misses)

    def _merged(self, data: bytes) -> tuple[int, ...]:
        """The tokens of a piece that is not a token, from the cache when it is there."""
        cache = self._cache
        if cache is None or len(data) > CACHE_MAX_PIECE:
            return tuple(self._merge(data))
        tokens = cache.get(data)
        if tokens is None:
            tokens = tuple(self._merge(data))
            if len(cache) >= self.cache_size:
                cache.clear()  # cheaper than LRU bookkeeping, and the hot pieces come back at once
            cache[data] = tokens
        return tokens

    def _merge(self, piece: bytes) -> list[int]:
        if len(piece) > LONG_PIECE:
            return merge_heap(self._ranks, piece)
        return merge_scan(self._ranks, piece)


def _utf8(piece: str | bytes) -> bytes:
    if type(piece) is str:
        return piece.encode()
    if type(piece) is bytes:
        return piece
    raise TypeError(f"piece must be str or bytes, not {type(piece).__name__}")


class CodePointSet:
    """A set of code points, built from inclusive (first, last) ranges, that finds them in a text.

    The tokenizer uses it to spot, with one cheap pass, the rare characters whose Unicode class
    the ``regex`` module and tiktoken disagree on (see requestlog/tokenizer.py).
    """

    __slots__ = ("_pattern", "min")

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        ranges = sorted(ranges)
        for first, last in ranges:
            if not 0 <= first <= last <= 0x10FFFF:
                raise ValueError(f"bad code point range ({first:#x}, {last:#x})")
        self.min = ranges[0][0] if ranges else 0x110000
        members = "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)
        self._pattern = re.compile(f"[{members}]") if ranges else None

    def __repr__(self) -> str:
        return f"<CodePointSet pure min={self.min:#x}>"

    def intersects(self, text: str) -> bool:
        """Whether any character of ``text`` is in the set."""
        if self._pattern is None or (self.min >= 0x80 and text.isascii()):
            return False
        return self._pattern.search(text) is not None
