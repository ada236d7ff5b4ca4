"""Keys and spend in Redis: the same keys and the same counters for every worker of a fleet.

Layout (prefix ``fgw:``): ``fgw:key:<hash>`` holds a key's record as JSON, ``fgw:keys`` is the set
of hashes (for listing), and ``fgw:spend:<cell>`` is an integer counter of nano-USD. A charge is one
Lua script (INCRBY and EXPIRE on every counter of the request), so it is atomic across the fleet
and costs one round trip; a check is one MGET.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from fastgw.keys.record import KeyRecord
from fastgw.keys.store import StoreError

PREFIX = "fgw:"
_CHARGE_LUA = """
local amount = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('INCRBY', key, amount)
  local ttl = tonumber(ARGV[i + 1])
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
end
return #KEYS
"""


class RedisKeyStore:
    def __init__(self, url: str, timeout: float = 1.0) -> None:
        self.url = url
        self.client = Redis.from_url(url, socket_timeout=max(timeout, 1.0), socket_connect_timeout=max(timeout, 1.0),
                                     retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self._charge_script: Any = self.client.register_script(_CHARGE_LUA)

    def __repr__(self) -> str:
        return f"RedisKeyStore({self.url!r})"

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except Exception as exc:  # redis errors and OSErrors alike: the store did not answer
            raise StoreError(f"key store {what}: {type(exc).__name__}: {exc}") from exc

    async def put(self, record: KeyRecord) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(f"{PREFIX}key:{record.key_hash}", record.to_json())
        pipe.sadd(f"{PREFIX}keys", record.key_hash)
        await self._call("put", pipe.execute())

    async def get(self, key_hash: str) -> KeyRecord | None:
        raw = await self._call("get", self.client.get(f"{PREFIX}key:{key_hash}"))
        return KeyRecord.from_json(raw) if raw else None

    async def all(self) -> list[KeyRecord]:
        hashes = sorted(await self._call("list", self.client.smembers(f"{PREFIX}keys")))
        if not hashes:
            return []
        raws = await self._call("list", self.client.mget([f"{PREFIX}key:{h.decode()}" for h in hashes]))
        return sorted((KeyRecord.from_json(r) for r in raws if r), key=lambda r: r.created_at)

    async def read(self, cells: list[str]) -> list[int]:
        if not cells:
            return []
        values = await self._call("read", self.client.mget([f"{PREFIX}spend:{c}" for c in cells]))
        return [int(v) if v else 0 for v in values]

    async def charge(self, cells: list[tuple[str, int]], nano: int) -> None:
        if cells and nano:
            keys = [f"{PREFIX}spend:{c}" for c, _ in cells]
            await self._call("charge", self._charge_script(keys=keys, args=[nano, *(ttl for _, ttl in cells)]))

    async def close(self) -> None:
        await self.client.aclose()
