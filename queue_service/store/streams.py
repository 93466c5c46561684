"""A worker's side of the lanes (a queue's stream of one tenant at one level): reading
entries as consumer of the group from the lane the scheduler picked, waiting for work,
keeping its own entries alive, and taking over those of workers that went silent.

An entry a worker has read stays in the group's pending list until acknowledged. A live
worker touches its in-flight entries (XCLAIM ... JUSTID, which resets their idle time)
every third of the visibility timeout; an entry idle for longer than the timeout belongs to
a worker that died, and XAUTOCLAIM hands it to whoever asks next.

Waiting for work (BLPOP on the levels' wake lists) runs on a connection of its own, so
another connection can end it at once (CLIENT UNBLOCK) when what the worker may take changes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from queue_service.errors import StreamsLost

from .keys import CONSUMER_GROUP, Keys
from .scheduler import Lane

log = logging.getLogger("queue_service.store.streams")

RECLAIM_SCANS = 100
"""Most XAUTOCLAIM calls one take-over makes while looking through a long pending list."""


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One stream entry handed to this consumer."""

    queue: str
    level: int
    entry_id: str
    task_id: str
    deliveries: int = 1
    """How many times the entry was handed to a worker (more than once: a worker was lost)."""
    tenant: str = ""
    """The id of the tenant whose lane holds the entry (`keys.tenant_id`)."""

    @property
    def lane(self) -> Lane:
        return Lane(self.queue, self.level, self.tenant)


class StreamReader:
    def __init__(
        self,
        redis: Redis,
        blocking: Redis,
        keys: Keys,
        consumer: str,
        visibility_timeout: float,
    ) -> None:
        self._redis = redis
        self._blocking = blocking
        self._keys = keys
        self.consumer = consumer
        self.visibility_ms = int(visibility_timeout * 1000)
        self._blocking_client_id: int | None = None

    def _key(self, lane: Lane) -> str:
        return self._keys.stream(lane.queue, lane.level, lane.tenant)

    async def read(self, lane: Lane, count: int) -> list[StreamEntry]:
        """Up to `count` entries of the lane never handed to a worker before."""
        try:
            reply = await self._redis.xreadgroup(
                CONSUMER_GROUP, self.consumer, {self._key(lane): ">"}, count=count
            )
        except ResponseError as exc:
            raise _lost_or(exc) from exc
        entries = []
        for _, items in cast(list[Any], reply or []):
            for entry_id, fields in items:
                task = fields.get(b"task", b"").decode() if fields else ""
                entries.append(
                    StreamEntry(lane.queue, lane.level, entry_id.decode(), task, 1, lane.tenant)
                )
        return entries

    async def wait_for_work(
        self, levels: list[int], wait_s: float, queues: frozenset[str] | None = None
    ) -> None:
        """Return when work was put at one of `levels` (on one of `queues`, when given), or
        a wake token waited already, after `wait_s` seconds, or when interrupted."""
        if self._blocking_client_id is None:
            self._blocking_client_id = int(await self._blocking.client_id())
        try:
            if queues is None:
                wakes = [self._keys.wake(level) for level in levels]
            else:
                wakes = [self._keys.wake(level, q) for level in levels for q in sorted(queues)]
            await cast(Awaitable[Any], self._blocking.blpop(wakes, wait_s))  # type: ignore[arg-type]
        except Exception:
            self._blocking_client_id = None  # reconnected: a new id
            raise

    async def interrupt(self) -> None:
        """End a wait for work at once."""
        client_id = self._blocking_client_id
        if client_id is not None:
            await self._redis.client_unblock(client_id)

    async def touch(self, entries: Iterable[StreamEntry]) -> None:
        """Reset the idle time of the entries this worker is running."""
        by_stream: dict[str, list[int | bytes | str | memoryview]] = {}
        for entry in entries:
            by_stream.setdefault(self._key(entry.lane), []).append(entry.entry_id)
        if not by_stream:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xclaim(stream, CONSUMER_GROUP, self.consumer, 0, ids, justid=True)
            await pipe.execute()

    async def holders(self, lanes: list[Lane]) -> list[set[str]]:
        """For each lane, the consumers (worker names) holding entries of it, in one round
        trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for lane in lanes:
                pipe.xpending(self._key(lane), CONSUMER_GROUP)
            summaries = await pipe.execute(raise_on_error=False)
        return [
            {c["name"].decode() for c in summary.get("consumers") or []}
            if isinstance(summary, dict)
            else set()
            for summary in summaries
        ]

    async def reclaim(self, lane: Lane, count: int) -> list[StreamEntry]:
        """Take over up to `count` entries idle past the visibility timeout.

        Entries deleted meanwhile (their task was cancelled) are acknowledged and skipped.
        """
        stream = self._key(lane)
        claimed: list[tuple[bytes, dict[bytes, bytes] | None]] = []
        cursor: bytes | str = "0-0"
        for _ in range(RECLAIM_SCANS):  # each XAUTOCLAIM looks at 10 x COUNT pending entries
            try:
                reply = cast(
                    list[Any],
                    await self._redis.xautoclaim(
                        stream,
                        CONSUMER_GROUP,
                        self.consumer,
                        self.visibility_ms,
                        cursor,
                        count=count - len(claimed),
                    ),
                )
            except ResponseError as exc:
                raise _lost_or(exc) from exc
            claimed += [(entry_id, fields) for entry_id, fields in reply[1] if entry_id]
            cursor = reply[0]
            if len(claimed) >= count or cursor in (b"0-0", "0-0"):
                break
        if not claimed:
            return []
        gone = [entry_id for entry_id, fields in claimed if not fields]
        if gone:
            await self._redis.xack(stream, CONSUMER_GROUP, *gone)
        live = [(entry_id, fields) for entry_id, fields in claimed if fields]
        deliveries = await self._deliveries(stream, (entry_id for entry_id, _ in live))
        taken = []
        for entry_id, fields in live:
            text_id = entry_id.decode()
            task = fields.get(b"task", b"").decode()
            delivered = deliveries.get(text_id, 1)
            taken.append(StreamEntry(lane.queue, lane.level, text_id, task, delivered, lane.tenant))
            log.warning("took over %s (task %s) from a silent worker", text_id, task)
        return taken

    async def _deliveries(self, stream: str, entry_ids: Iterable[bytes]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry_id in entry_ids:
            rows = await self._redis.xpending_range(
                stream, CONSUMER_GROUP, min=entry_id, max=entry_id, count=1
            )
            for row in rows:
                counts[row["message_id"].decode()] = int(row["times_delivered"])
        return counts

    async def aclose(self) -> None:
        await self._blocking.aclose()


def _lost_or(exc: ResponseError) -> Exception:
    """NOGROUP (the stream or its group is gone) as `StreamsLost`; anything else as it is."""
    if str(exc).startswith("NOGROUP"):
        return StreamsLost(f"a level stream is gone: {exc}")
    return exc
