"""The pub/sub hub: one connection for every waiter, confirmed subscriptions, reconnects."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from queue_service.errors import HubDisconnected
from queue_service.models import Status
from queue_service.store.events import Chunk, Done, decode, encode_chunk, encode_done, encode_head
from queue_service.store.hub import PubSubHub
from tests.helpers import eventually


@pytest.fixture
async def named(redis_url: str) -> AsyncIterator[tuple[Redis, str]]:
    """A Redis client whose connections carry a name of this test's own."""
    name = f"hub-{uuid.uuid4().hex[:8]}"
    client = Redis.from_url(redis_url, client_name=name)
    yield client, name
    await client.aclose()


@pytest.fixture
async def hub(named: tuple[Redis, str], prefix: str) -> AsyncIterator[PubSubHub]:
    running = PubSubHub(named[0], f"{prefix}:hub")
    await running.start()
    yield running
    await running.stop()


async def hub_connections(redis: Redis, name: str) -> list[dict[str, str]]:
    return [c for c in await redis.client_list() if c.get("name") == name and int(c["sub"])]


def test_events_round_trip() -> None:
    assert decode(encode_chunk(b"data: x\n\n")) == Chunk(b"data: x\n\n")
    head = decode(encode_head(200, "text/event-stream"))
    assert (head.status_code, head.content_type) == (200, "text/event-stream")  # type: ignore[union-attr]
    done = decode(encode_done(Status.FAILED, 429, "application/json", b'{"e":\n1}'))
    assert done == Done(Status.FAILED, 429, "application/json", b'{"e":\n1}')


async def test_many_waiters_share_one_connection_and_get_their_own_events(
    hub: PubSubHub, named: tuple[Redis, str], redis: Redis, prefix: str
) -> None:
    channels = [f"{prefix}:ch:{n}" for n in range(200)]
    async with asyncio.TaskGroup() as group:

        async def wait_one(channel: str) -> bytes:
            async with hub.subscribe(channel) as events:
                await redis.publish(channel, encode_chunk(channel.encode()))
                event = await events.next()
                assert isinstance(event, Chunk)
                return event.raw

        tasks = [group.create_task(wait_one(channel)) for channel in channels]
    assert [task.result() for task in tasks] == [channel.encode() for channel in channels]

    async def only_its_own_channel_left() -> bool:  # unsubscribes are sent, not awaited
        (connection,) = await hub_connections(redis, named[1])
        return bool(connection["sub"] == "1")

    await eventually(only_its_own_channel_left)
    assert hub.channels == 0


async def test_a_subscription_is_live_when_subscribe_returns(
    hub: PubSubHub, redis: Redis, prefix: str
) -> None:
    channel = f"{prefix}:live"
    async with hub.subscribe(channel) as events:
        assert await redis.pubsub_numsub(channel) == [(channel.encode(), 1)]
        await redis.publish(channel, encode_chunk(b"first"))
        assert await events.next() == Chunk(b"first")
    assert await redis.pubsub_numsub(channel) == [(channel.encode(), 0)]


async def test_waiters_learn_of_a_lost_connection_and_the_hub_comes_back(
    hub: PubSubHub, named: tuple[Redis, str], redis: Redis, prefix: str
) -> None:
    channel = f"{prefix}:lost"
    async with hub.subscribe(channel) as events:
        (connection,) = await hub_connections(redis, named[1])
        await redis.client_kill_filter(_id=connection["id"])
        with pytest.raises(HubDisconnected):
            async with asyncio.timeout(5):
                await events.next()

    async def a_new_waiter_gets_its_event() -> bool:
        try:
            async with hub.subscribe(f"{channel}:after") as events:
                await redis.publish(f"{channel}:after", encode_chunk(b"back"))
                return bool(await events.next() == Chunk(b"back"))
        except Exception:
            return False

    # new waiters work again once the hub has reconnected
    await eventually(a_new_waiter_gets_its_event, timeout=10, interval=0.1)
