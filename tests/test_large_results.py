"""A large answer reaches its waiting client through the task record, not pub/sub: the
connection every waiter of an API process shares never carries it."""

from __future__ import annotations

import asyncio

import httpx
import orjson
from arq.worker import Worker
from redis.asyncio import Redis

from queue_service.store.tasks import INLINE_RESULT_BYTES
from tests.helpers import put_body


async def test_a_large_blocking_answer_arrives_whole_and_stays_off_pub_sub(
    api: httpx.AsyncClient, worker: Worker, redis: Redis, prefix: str
) -> None:
    reply = "word " * (INLINE_RESULT_BYTES // 2)  # well over the inline size as JSON
    published: list[int] = []
    async with redis.pubsub() as pubsub:
        await pubsub.psubscribe(f"{prefix}:{{large}}:events:*")

        async def listen() -> None:
            async for message in pubsub.listen():
                if message["type"] == "pmessage":
                    published.append(len(message["data"]))

        listening = asyncio.create_task(listen())
        body = put_body("large", mode="blocking", level=0, mock={"reply": reply})
        response = await api.post("/v1/queue/put", json=body)
        listening.cancel()
    assert response.status_code == 200
    answer = orjson.loads(response.content)
    assert answer["choices"][0]["message"]["content"] == reply
    assert published  # the completion event went out...
    assert max(published) < 1024  # ...without the body
