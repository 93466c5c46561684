"""Tests of the store modules against a real Redis, one file per module, and their helpers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from queue_service.models import PutRequest, ResponseMode
from queue_service.store import Store, Submission
from queue_service.store.keys import tenant_id

ALICE = tenant_id("alice")
"""The id of the tenant `submit` puts jobs for unless told: its lanes carry it."""


def put_request(
    queue: str = "q",
    mode: ResponseMode = ResponseMode.BLOCKING,
    level: int = 0,
    endpoint: str = "chat/completions",
    data: dict[str, Any] | None = None,
) -> PutRequest:
    callback_url = "http://127.0.0.1:9/callback" if mode is ResponseMode.CALLBACK else None
    return PutRequest(
        queue=queue,
        endpoint=endpoint,
        level=level,
        data=data if data is not None else {"messages": [{"role": "user", "content": "hi"}]},
        response_mode=mode,
        callback_url=callback_url,
    )


async def submit(
    store: Store,
    job: PutRequest | None = None,
    *,
    tenant: str = "alice",
    timeout_s: int = 60,
    sealed_upstream_key: bytes | None = None,
) -> Submission:
    """Prepare and submit a job (a blocking one on queue `q` unless told)."""
    submission = await store.tasks.prepare(
        job or put_request(), tenant, timeout_s, sealed_upstream_key
    )
    await store.tasks.submit(submission)
    return submission


@contextlib.asynccontextmanager
async def listening(
    redis: Redis, *channels: str
) -> AsyncIterator[Callable[[], Awaitable[tuple[str, bytes]]]]:
    """Subscribe (confirmed) to `channels`; yields `next()`: the next (channel, payload)."""
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(*channels)
        for _ in channels:
            confirmation = await pubsub.get_message(timeout=5.0)
            assert confirmation is not None
            assert confirmation["type"] == "subscribe"

        async def next_message() -> tuple[str, bytes]:
            message = await pubsub.get_message(timeout=5.0)
            assert message is not None, "no message within 5s"
            return message["channel"].decode(), message["data"]

        yield next_message
