"""Token buckets shared by every API process: the request rate limits of API keys."""

from __future__ import annotations

from queue_service.timing import now_ms

from .keys import Keys
from .lua import LuaScripts


class TokenBuckets:
    def __init__(self, keys: Keys, lua: LuaScripts) -> None:
        self._keys = keys
        self._lua = lua

    async def take(self, key_id: str, rate: float, burst: int) -> int:
        """Take a token from the key's bucket: 0 when allowed, else ms until one is there."""
        return await self._lua.rate_limit(
            bucket=self._keys.rate_bucket(key_id), now_ms=now_ms(), rate=rate, burst=burst
        )
