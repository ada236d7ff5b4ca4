"""What both cache backends share: the result of a lookup, the one failure, and the store rules."""

from __future__ import annotations

from fastgw.cache.control import MAX_BUCKET
from fastgw.cache.entry import CachedResponse


class CacheUnavailable(Exception):
    """The shared cache didn't answer in time. The stage serves the request as an uncached miss."""


class Lookup:
    """A lookup's answer.

    ``entry``/``index``: the served response and its bucket slot (Helicone-Cache-Bucket-Idx), or
    None on a miss. ``next_slot``: where the response of this miss should be stored, or None when
    it shouldn't be (not saving, or a hit).
    """

    __slots__ = ("entry", "index", "next_slot")

    def __init__(self, entry: CachedResponse | None, index: int | None, next_slot: int | None) -> None:
        self.entry = entry
        self.index = index
        self.next_slot = next_slot

    @property
    def hit(self) -> bool:
        return self.entry is not None

    def __repr__(self) -> str:
        return f"Lookup(hit={self.hit}, index={self.index}, next_slot={self.next_slot})"


def storable(entry: CachedResponse, slot: int, ttl_s: int, max_entry_bytes: int) -> bool:
    """Only a 2xx answer, within the size bound, into a real slot, for a positive time."""
    return 200 <= entry.status < 300 and ttl_s > 0 and 0 <= slot < MAX_BUCKET and entry.size <= max_entry_bytes
