"""Instance numbers: every API or worker process holds one (0-9999) for its task ids.

Each number is a lease that its process renews; a process that dies frees its number after
the lease's ttl, and one whose lease vanished (Redis lost its data) takes it again, or
another number when someone else was quicker. Numbers are drawn at random among the free
ones, so two processes that both lost their leases are unlikely to meet on one number.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets

from .ids import TaskIdFactory
from .keys import Keys
from .lua import LuaScripts

log = logging.getLogger("queue_service.store.instances")

NUMBERS = 10_000
LEASE_TTL_MS = 30_000
RENEW_INTERVAL = 5.0
TRIES = 100


class InstanceLease:
    def __init__(self, keys: Keys, lua: LuaScripts, ids: TaskIdFactory) -> None:
        self._keys = keys
        self._lua = lua
        self._ids = ids
        self._token = secrets.token_hex(8)
        self._configured = False

    @property
    def number(self) -> int:
        return self._ids.instance

    async def claim(self, configured: int | None = None) -> int:
        """Take a number: `configured` as it is (no lease), else a free one from Redis."""
        if configured is not None:
            self._configured = True
            self._ids.instance = configured
            return configured
        for number in random.sample(range(NUMBERS), TRIES):
            if await self._hold(number):
                self._ids.instance = number
                return number
        raise RuntimeError(f"no free instance number found in {TRIES} tries")

    async def renew(self) -> None:
        """Keep this process's number; take another if it was lost to another process."""
        if self._configured or await self._hold(self.number):
            return
        previous = self.number
        await self.claim()
        log.warning("instance number %04d was taken over; now %04d", previous, self.number)

    async def keep(self) -> None:
        """Renew the lease every few seconds, for the life of the process."""
        while True:
            await asyncio.sleep(RENEW_INTERVAL)
            try:
                await self.renew()
            except Exception as exc:  # Redis away: try again at the next interval
                log.warning("could not renew instance number %04d: %s", self.number, exc)

    async def _hold(self, number: int) -> bool:
        return await self._lua.instance_lease(
            lease=self._keys.instance_lease(number), token=self._token, ttl_ms=LEASE_TTL_MS
        )
