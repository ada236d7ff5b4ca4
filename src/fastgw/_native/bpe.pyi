"""Byte-pair encoding of pre-tokenised pieces (compiled twin: bpe.pyx; pure twin: _pure/bpe.py).

Why a native module: counting the tokens of a logged request or response whose provider
reported no usage means encoding every piece of its text, so the per-piece work (a vocabulary
lookup, and a merge loop for the pieces that are not a whole token) must not allocate or go
through the interpreter. The pre-tokeniser (the regex split) is requestlog/tokenizer.py's job.

Both twins give tiktoken's tokens for every piece; the merge rules are in _pure/bpe.py.
"""

from collections.abc import Iterable

MAX_RANK: int  # the largest rank a vocabulary may use (0xFFFFFFFE)
LONG_PIECE: int  # pieces longer than this many bytes are merged with a heap, in O(n log n)
CACHE_MAX_PIECE: int  # pieces longer than this many bytes are never cached
DEFAULT_CACHE_SIZE: int  # cache_size unless told otherwise: 0 compiled, 4096 pure (see _pure/bpe.py)

class BytePairEncoder:
    """One vocabulary (token bytes -> rank, e.g. o200k_base's), ready to encode pieces.

    With ``cache_size`` > 0, the results for pieces that are not a whole token are kept, up to
    ``cache_size`` of them (the cache is emptied when full), because a gateway sees the same
    rare words again and again; the compiled twin keeps counts only, and by default no cache
    (DEFAULT_CACHE_SIZE). The cache never changes a result. Raises TypeError when ``ranks`` is
    not a dict, and ValueError when a token is not a non-empty ``bytes``, a rank is not an int
    in 0..MAX_RANK, a single byte is missing, or ``cache_size`` is not an int >= 0.
    """

    n_tokens: int  # tokens in the vocabulary
    cache_size: int  # the most merged pieces the cache holds; 0: no cache

    def __init__(self, ranks: dict[bytes, int], cache_size: int = ...) -> None: ...
    def encode_piece(self, piece: bytes) -> list[int]:
        """The tokens of one piece (a piece that is a whole token is one lookup); [] for b""."""
    def count_piece(self, piece: bytes) -> int:
        """len(encode_piece(piece)), without building the list."""
    def encode_pieces(self, pieces: list[str] | list[bytes] | list[str | bytes]) -> list[int]:
        """The tokens of every piece in order; a str piece stands for its UTF-8 bytes.

        Raises UnicodeEncodeError for a str piece holding a lone surrogate, TypeError for a
        piece that is neither str nor bytes.
        """
    def count_pieces(self, pieces: list[str] | list[bytes] | list[str | bytes]) -> int:
        """len(encode_pieces(pieces)): one call per text, so the loop over pieces stays in C."""

class CodePointSet:
    """A set of code points, from inclusive (first, last) ranges; ValueError for a bad range."""

    min: int  # the smallest member; 0x110000 when the set is empty

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None: ...
    def intersects(self, text: str) -> bool:
        """Whether any character of ``text`` is in the set (one pass, no allocation)."""
