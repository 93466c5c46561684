"""Crash recovery of stream entries: keep ours alive, take over those of silent workers.

An entry a worker has read stays in the group's pending list until acknowledged. A live
worker touches its in-flight entries (XCLAIM ... JUSTID, which resets their idle time)
every third of the visibility timeout; an entry idle for longer than the timeout belongs to
a worker that died, and XAUTOCLAIM hands it to whoever asks next.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, cast

from redis.asyncio import Redis

from queue_service.store.keys import CONSUMER_GROUP

log = logging.getLogger("workers.recovery")


class PendingKeeper:
    def __init__(self, redis: Redis, consumer: str, visibility_timeout: float) -> None:
        self.redis = redis
        self.consumer = consumer
        self.visibility_ms = int(visibility_timeout * 1000)

    async def touch(self, entries: dict[str, list[str]]) -> None:
        """Reset the idle time of the entries this worker is running (stream -> ids)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in entries.items():
                message_ids: list[int | bytes | str | memoryview] = [*ids]
                pipe.xclaim(stream, CONSUMER_GROUP, self.consumer, 0, message_ids, justid=True)
            await pipe.execute()

    async def reclaim(self, stream: str, count: int) -> list[tuple[str, str, int]]:
        """Take over up to `count` entries idle past the visibility timeout.

        Returns (entry id, task id, times delivered) for each; entries deleted meanwhile
        (their task was cancelled) are acknowledged and skipped.
        """
        reply = cast(
            list[Any],
            await self.redis.xautoclaim(
                stream, CONSUMER_GROUP, self.consumer, self.visibility_ms, "0-0", count=count
            ),
        )
        claimed = [(entry_id, fields) for entry_id, fields in reply[1] if entry_id]
        if not claimed:
            return []
        gone = [entry_id for entry_id, fields in claimed if not fields]
        if gone:
            await self.redis.xack(stream, CONSUMER_GROUP, *gone)
        live = [(entry_id, fields) for entry_id, fields in claimed if fields]
        deliveries = await self._deliveries(stream, (entry_id for entry_id, _ in live))
        taken = []
        for entry_id, fields in live:
            text_id = entry_id.decode()
            task = fields.get(b"task", b"").decode()
            taken.append((text_id, task, deliveries.get(text_id, 1)))
            log.warning("took over %s (task %s) from a silent worker", text_id, task)
        return taken

    async def _deliveries(self, stream: str, entry_ids: Iterable[bytes]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry_id in entry_ids:
            rows = await self.redis.xpending_range(
                stream, CONSUMER_GROUP, min=entry_id, max=entry_id, count=1
            )
            for row in rows:
                counts[row["message_id"].decode()] = int(row["times_delivered"])
        return counts
