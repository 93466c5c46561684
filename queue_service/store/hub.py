"""One Redis pub/sub connection per API process, shared by every waiting request.

A request subscribes to its task's channel (and waits for Redis to confirm) before the task
is enqueued, so no event can be missed. When the connection drops, every waiter gets
`HubDisconnected` (events may have been lost meanwhile) and the hub reconnects by itself,
resubscribing what is still wanted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from queue_service.errors import HubDisconnected, ServiceUnavailable, SlowReader

from .events import TaskEvent, decode, is_chunk

log = logging.getLogger("queue_service.store.hub")

CONFIRM_TIMEOUT = 5.0
_LOST = object()
_OVERFLOWED = object()


class Subscription:
    """The events of one channel, for one waiting request.

    With `max_bytes`, at most that many bytes of relayed stream chunks wait here for a
    request that reads too slowly: past it the events are dropped, `overflowed` is set and
    `next` raises `SlowReader` (as Redis's own `client-output-buffer-limit pubsub` cuts slow
    readers off). The one completion event, bounded by the result size limit, never counts.
    """

    def __init__(self, channel: bytes, max_bytes: int | None = None) -> None:
        self.channel = channel
        self.max_bytes = max_bytes
        self.buffered = 0
        self.overflowed = asyncio.Event()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()

    def _put(self, item: Any) -> None:
        if self.overflowed.is_set():
            return
        if isinstance(item, bytes) and is_chunk(item):
            self.buffered += len(item)
            if self.max_bytes is not None and self.buffered > self.max_bytes:
                self.overflowed.set()
                while not self._queue.empty():  # let go of what waits
                    self._queue.get_nowait()
                self.buffered = 0
                item = _OVERFLOWED
        self._queue.put_nowait(item)

    async def next(self) -> TaskEvent:
        item = await self._queue.get()
        if item is _LOST:
            raise HubDisconnected("lost the connection to Redis while waiting for the result")
        if item is _OVERFLOWED:
            raise SlowReader(
                f"the client read the stream too slowly (over {self.max_bytes} bytes waited)"
            )
        if is_chunk(item):
            self.buffered -= len(item)
        event: TaskEvent = decode(item)
        return event


class PubSubHub:
    def __init__(self, redis: Redis, home_channel: str) -> None:
        self._home = home_channel.encode()  # always subscribed: keeps the reader listening
        self._pubsub = redis.pubsub()
        self._waiters: dict[bytes, set[Subscription]] = {}
        self._confirmations: dict[bytes, list[asyncio.Future[None]]] = {}
        self._reader: asyncio.Task[None] | None = None

    @property
    def channels(self) -> int:
        """How many task channels have waiters."""
        return len(self._waiters)

    async def start(self) -> None:
        await self._confirmed_subscribe(self._home)
        self._reader = asyncio.create_task(self._read(), name="pub/sub hub")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    @contextlib.asynccontextmanager
    async def subscribe(
        self, channel: str, max_bytes: int | None = None
    ) -> AsyncIterator[Subscription]:
        """Subscribe (confirmed by Redis) for as long as the context lasts; `max_bytes` bounds
        what may wait unread (see `Subscription`)."""
        key = channel.encode()
        subscription = Subscription(key, max_bytes)
        waiters = self._waiters.setdefault(key, set())
        waiters.add(subscription)
        try:
            if len(waiters) == 1:
                await self._confirmed_subscribe(key)
            yield subscription
        finally:
            waiters.discard(subscription)
            if not waiters and self._waiters.get(key) is waiters:
                del self._waiters[key]
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.unsubscribe(key)

    async def _confirmed_subscribe(self, channel: bytes) -> None:
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(channel, []).append(confirmed)
        try:
            await self._pubsub.subscribe(channel)
            async with asyncio.timeout(CONFIRM_TIMEOUT):
                if self._reader is None:  # starting: read the confirmation here
                    while not confirmed.done():
                        await self._handle(await self._pubsub.get_message(timeout=None))
                await confirmed
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("cannot subscribe to %s: %s", channel.decode(), exc)
            raise ServiceUnavailable("the queue's store is unavailable; retry shortly") from exc
        finally:
            pending = self._confirmations.get(channel, [])
            if confirmed in pending:
                pending.remove(confirmed)

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
                await self._handle(message)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("pub/sub connection lost (%s); waiters told, reconnecting", exc)
                self._lose_everything()
                await asyncio.sleep(0.5)  # the next get_message reconnects and resubscribes

    async def _handle(self, message: dict[str, Any] | None) -> None:
        if message is None:
            return
        kind, channel = message["type"], message["channel"]
        if kind == "message":
            for subscription in self._waiters.get(channel, ()):
                subscription._put(message["data"])
        elif kind == "subscribe":
            for future in self._confirmations.pop(channel, []):
                if not future.done():
                    future.set_result(None)

    def _lose_everything(self) -> None:
        for waiters in self._waiters.values():
            for subscription in waiters:
                subscription._put(_LOST)
        for futures in self._confirmations.values():
            for future in futures:
                if not future.done():
                    future.set_exception(ConnectionError("pub/sub connection lost"))
                    future.exception()  # its subscriber may have left: no "never retrieved"
        self._confirmations.clear()
