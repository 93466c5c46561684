"""Usage counted in memory and written to Redis every `FLUSH_S` in one round trip: a job's
outcome costs no Redis call for its usage (see store/usage.py for what is kept). A worker
stopping writes what it holds; one that dies loses at most the last second's counts."""

from __future__ import annotations

import asyncio
import logging
import math
import time

from queue_service.store import STORE_ERRORS
from queue_service.store.usage import HOUR, UsageCounts, UsageLedger, UsageSeries

log = logging.getLogger("workers.usage_counter")

FLUSH_S = 1.0


class UsageCounter:
    def __init__(self, ledger: UsageLedger) -> None:
        self._ledger = ledger
        self._pending: dict[tuple[UsageSeries, int], UsageCounts] = {}

    def add(self, series: UsageSeries, counts: UsageCounts) -> None:
        self._hold((series, math.floor(time.time() / HOUR)), counts)

    def _hold(self, key: tuple[UsageSeries, int], counts: UsageCounts) -> None:
        held = self._pending.get(key)
        self._pending[key] = counts if held is None else held + counts

    async def flush(self) -> None:
        """Write what is held; kept for the next flush when Redis cannot take it."""
        batch, self._pending = self._pending, {}
        if not batch:
            return
        try:
            await self._ledger.record_many(batch)
        except STORE_ERRORS:
            for key, counts in batch.items():
                self._hold(key, counts)
            raise

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                await self.flush()
            except STORE_ERRORS as exc:
                log.warning("usage counts not written yet (%s); trying again", exc)
