"""The shared cache: bucket slots in Redis, looked up in one round trip by a Lua script.

Data layout. One hash per cache key, ``fastgw:c:<32 hex digits of the key>``, with two fields
per filled slot ``i`` (0 ≤ i < 20):

* ``e<i>``: the slot's expiry, milliseconds since the epoch on the Redis server's clock;
* ``d<i>``: the entry, ``entry.encode`` bytes.

Redis 7.0 has no per-field expiry, so a slot's expiry lives beside it and the scripts drop dead
slots when they meet them; the hash itself carries a PEXPIRE of its longest-lived slot, so an
abandoned bucket disappears whole. Expiry fields are separate from the bodies so the lookup can
inspect all slots while touching (and sending) only the one body it serves. Both scripts read
the time with ``TIME``, so gateways with skewed clocks agree on what has expired.

Lookup script: ``KEYS[1]`` the hash; ``ARGV`` = bucket_max, read (0/1), save (0/1), and a
random integer from the client (a script's own PRNG is not meant to be random). It returns
``{live slots, served index or -1, slot to fill or -1, entry bytes or nil}``, following the
bucket rules in ``fastgw.cache.memory``.

Store script: ``KEYS[1]`` the hash; ``ARGV`` = slot, TTL in ms, entry bytes. Writes both fields
and lengthens the hash's PEXPIRE if this slot outlives it.

Pipelining with the rate limiter (one round trip for both)::

    keys, args = cache.lookup_args(key, directive)
    pipe = client.pipeline(transaction=False)
    pipe.evalsha(LOOKUP_SHA, len(keys), *keys, *args)
    ...  # the rate-limit script
    replies = await pipe.execute(raise_on_error=False)
    lookup = await cache.lookup_from_reply(replies[0], key, directive)

Use ``evalsha`` rather than a registered Script object: redis-py then checks ``SCRIPT EXISTS``
before every pipeline, a second round trip. ``lookup_from_reply`` turns an error reply into
CacheUnavailable, except NoScriptError (Redis restarted and forgot the script): then it runs the
lookup again on its own, which falls back to EVAL and so reloads the script. Wrap the
``execute`` itself too: a connection failure raises there, and ``cache.failed(exc)`` counts it
and gives the CacheUnavailable to handle.

Any Redis failure (refused, reset, slower than the timeout, or an error reply) raises
CacheUnavailable and counts a bypass: the cache must never turn into the request's failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from fastgw.cache.base import CacheUnavailable, Lookup, storable
from fastgw.cache.control import CacheDirective
from fastgw.cache.entry import CachedResponse, decode, encode

KEY_PREFIX = b"fastgw:c:"

LOOKUP_LUA = """\
local key = KEYS[1]
local n = tonumber(ARGV[1])
local read = ARGV[2] == '1'
local save = ARGV[3] == '1'
local rnd = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local names = {}
for i = 0, n - 1 do names[i + 1] = 'e' .. i end
local expiries = redis.call('HMGET', key, unpack(names))
local live, dead = {}, {}
local free, oldest, oldest_exp = -1, -1, 0
for i = 0, n - 1 do
  local e = tonumber(expiries[i + 1])
  if e and e > now then
    live[#live + 1] = i
    if oldest < 0 or e < oldest_exp then oldest, oldest_exp = i, e end
  else
    if expiries[i + 1] then
      dead[#dead + 1] = 'e' .. i
      dead[#dead + 1] = 'd' .. i
    end
    if free < 0 then free = i end
  end
end
if #dead > 0 then redis.call('HDEL', key, unpack(dead)) end
if read and #live > 0 and (free < 0 or not save) then
  local idx = live[(rnd % #live) + 1]
  local data = redis.call('HGET', key, 'd' .. idx)
  if data then return {#live, idx, -1, data} end
end
local slot = -1
if save then
  if free >= 0 then slot = free else slot = oldest end
end
return {#live, -1, slot, false}
"""

STORE_LUA = """\
local key = KEYS[1]
local ttl = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', key, 'd' .. ARGV[1], ARGV[3], 'e' .. ARGV[1], string.format('%.0f', now + ttl))
if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
return 1
"""

LOOKUP_SHA = hashlib.sha1(LOOKUP_LUA.encode()).hexdigest()
STORE_SHA = hashlib.sha1(STORE_LUA.encode()).hexdigest()

_FAILURES = (RedisError, OSError, TimeoutError)


def redis_key(key: bytes) -> bytes:
    return KEY_PREFIX + key.hex().encode()


class RedisCache:
    def __init__(self, client: Redis, timeout_s: float, max_entry_bytes: int = 8 * 1024 * 1024, *, owns_client: bool = False) -> None:
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the cache needs a Redis client with decode_responses=False: entries are bytes")
        self.client = client
        self.timeout_s = float(timeout_s)
        self.max_entry_bytes = int(max_entry_bytes)
        self._owns_client = owns_client
        self.hits = 0
        self.misses = 0
        self.stores = 0
        self.evictions = 0  # Redis evicts on its own (maxmemory policy); kept for uniform metrics
        self.bypasses = 0

    def lookup_args(self, key: bytes, directive: CacheDirective) -> tuple[list[bytes], list[int]]:
        return [redis_key(key)], [
            directive.bucket_max,
            1 if directive.read else 0,
            1 if directive.save else 0,
            random.getrandbits(31),
        ]

    def parse_lookup(self, reply: Any, directive: CacheDirective) -> Lookup:
        """The Lookup for a lookup script's reply (or the exception a pipeline put in its place)."""
        if isinstance(reply, BaseException):
            raise self.failed(reply)
        _live, index, slot, data = reply
        if data is not None:
            try:
                entry = decode(data)
            except ValueError:
                # Not ours or from an older layout: a miss, and saving overwrites it.
                self.misses += 1
                return Lookup(None, None, index if directive.save else None)
            self.hits += 1
            return Lookup(entry, index, None)
        self.misses += 1
        return Lookup(None, None, slot if slot >= 0 else None)

    async def lookup_from_reply(self, reply: Any, key: bytes, directive: CacheDirective) -> Lookup:
        """``parse_lookup`` for a pipelined reply, redoing the lookup if the script was missing."""
        if isinstance(reply, NoScriptError):
            return await self.lookup(key, directive)
        return self.parse_lookup(reply, directive)

    async def lookup(self, key: bytes, directive: CacheDirective) -> Lookup:
        keys, args = self.lookup_args(key, directive)
        reply = await self._eval(LOOKUP_SHA, LOOKUP_LUA, keys, args)
        return self.parse_lookup(reply, directive)

    async def store(self, key: bytes, slot: int, entry: CachedResponse, ttl_s: int) -> bool:
        """False when the entry isn't kept (not 2xx, too large, no TTL, slot out of range)."""
        if not storable(entry, slot, ttl_s, self.max_entry_bytes):
            return False
        await self._eval(STORE_SHA, STORE_LUA, [redis_key(key)], [slot, int(ttl_s) * 1000, encode(entry)])
        self.stores += 1
        return True

    async def load_scripts(self) -> None:
        """Load both scripts (e.g. at start-up) so pipelined EVALSHA finds them."""
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.client.script_load(LOOKUP_LUA)
                await self.client.script_load(STORE_LUA)
        except _FAILURES as exc:
            raise self.failed(exc) from exc

    def failed(self, exc: BaseException) -> CacheUnavailable:
        """Count a bypass and say why; for a caller that ran the script in its own pipeline."""
        self.bypasses += 1
        return CacheUnavailable(f"redis cache unavailable: {type(exc).__name__}: {exc}")

    async def _eval(self, sha: str, source: str, keys: list[bytes], args: list[Any]) -> Any:
        try:
            async with asyncio.timeout(self.timeout_s):
                try:
                    return await self.client.evalsha(sha, len(keys), *keys, *args)
                except NoScriptError:
                    # Redis restarted (or flushed its scripts): EVAL runs it and caches it again.
                    return await self.client.eval(source, len(keys), *keys, *args)
        except _FAILURES as exc:
            raise self.failed(exc) from exc

    async def aclose(self) -> None:
        """Close the client only if this cache made it: a shared one belongs to whoever made it."""
        if self._owns_client:
            await self.client.aclose()
