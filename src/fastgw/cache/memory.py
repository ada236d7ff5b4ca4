"""The in-process cache: an LRU over bucket slots, bounded in bytes, with a TTL per slot.

Slots hold the CachedResponse object itself, not its encoded bytes: a hit is a dict lookup with
nothing to decode, which is the point of a per-worker cache. The byte bound counts each entry's
payload (headers + body or events) plus a fixed allowance per slot and per event for the Python
objects around it, so it tracks real memory closely without measuring objects.

The LRU unit is a slot, not a whole bucket: a hot bucket keeps the slots that are being served.
Expired slots are dropped when a lookup meets them; ones never looked at again age out through
the LRU, so there is no sweeper task.

Bucket rules (the same in the Redis backend):

* read and save: a hit only once all ``bucket_max`` slots are filled; until then a miss whose
  response fills the lowest free slot.
* read only: a random live slot if there is any; a miss stores nothing.
* save only: never a hit; the response goes to the lowest free slot or, with the bucket full, to
  the slot nearest its expiry (the oldest, when TTLs are equal), so forced refreshes rotate.

Concurrent misses on one key may be told the same free slot; the last store wins and the next
miss fills the remaining slot. No reservation is worth the extra bookkeeping for that.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict

from fastgw.cache.base import Lookup, storable
from fastgw.cache.control import CacheDirective
from fastgw.cache.entry import CachedResponse

SLOT_OVERHEAD = 256  # bytes allowed per slot for the entry object, its dict key and LRU links
EVENT_OVERHEAD = 40  # per stored event: a bytes object's header and its list pointer


class _Slot:
    __slots__ = ("entry", "expires", "size")

    def __init__(self, entry: CachedResponse, expires: float, size: int) -> None:
        self.entry = entry
        self.expires = expires
        self.size = size


class MemoryCache:
    def __init__(self, max_bytes: int, max_entry_bytes: int) -> None:
        if max_entry_bytes < 1 or max_bytes < max_entry_bytes:
            raise ValueError("max_bytes must be at least max_entry_bytes, and both positive")
        self.max_bytes = int(max_bytes)
        self.max_entry_bytes = int(max_entry_bytes)
        self._slots: OrderedDict[tuple[bytes, int], _Slot] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.stores = 0
        self.evictions = 0
        self.bypasses = 0  # never counted here: memory is always available (kept for uniform metrics)

    def __len__(self) -> int:
        return len(self._slots)

    async def lookup(self, key: bytes, directive: CacheDirective) -> Lookup:
        return self.lookup_now(key, directive)

    def lookup_now(self, key: bytes, directive: CacheDirective) -> Lookup:
        """The lookup without a coroutine, for a caller that knows it has the memory backend."""
        slots = self._slots
        now = time.monotonic()
        live: list[int] = []
        free = -1
        oldest = -1
        oldest_expiry = 0.0
        for i in range(directive.bucket_max):
            slot = slots.get((key, i))
            if slot is not None and slot.expires <= now:
                del slots[(key, i)]
                self.bytes -= slot.size
                slot = None
            if slot is None:
                if free < 0:
                    free = i
                continue
            live.append(i)
            if oldest < 0 or slot.expires < oldest_expiry:
                oldest, oldest_expiry = i, slot.expires
        if directive.read and live and (free < 0 or not directive.save):
            index = live[0] if len(live) == 1 else random.choice(live)
            slots.move_to_end((key, index))
            self.hits += 1
            return Lookup(slots[(key, index)].entry, index, None)
        self.misses += 1
        if not directive.save:
            return Lookup(None, None, None)
        return Lookup(None, None, free if free >= 0 else oldest)

    async def store(self, key: bytes, slot: int, entry: CachedResponse, ttl_s: int) -> bool:
        return self.store_now(key, slot, entry, ttl_s)

    def store_now(self, key: bytes, slot: int, entry: CachedResponse, ttl_s: int) -> bool:
        """False when the entry isn't kept (not 2xx, too large, no TTL, slot out of range)."""
        if not storable(entry, slot, ttl_s, self.max_entry_bytes):
            return False
        size = entry.size + SLOT_OVERHEAD + (EVENT_OVERHEAD * len(entry.events) if entry.events else 0)
        slots = self._slots
        old = slots.pop((key, slot), None)
        if old is not None:
            self.bytes -= old.size
        slots[(key, slot)] = _Slot(entry, time.monotonic() + ttl_s, size)
        self.bytes += size
        self.stores += 1
        while self.bytes > self.max_bytes and len(slots) > 1:
            _, evicted = slots.popitem(last=False)
            self.bytes -= evicted.size
            self.evictions += 1
        return True

    def clear(self) -> None:
        self._slots.clear()
        self.bytes = 0

    async def aclose(self) -> None:
        """Nothing to release; here so the stage can close either backend the same way."""
