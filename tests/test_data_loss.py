"""Redis comes back empty (FLUSHALL, a restart without persistence): the API processes and the
worker heal by themselves, with no 500 answers, no task lost to a stale queue id, and task ids
that stay unique. Each test flushes a Redis of its own, never the shared one."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from queue_service.api.app import create_app
from queue_service.dev.embedded_redis import EmbeddedRedis, free_port
from queue_service.settings import Settings
from queue_service.store import TaskId
from queue_service.store.keys import Keys
from tests.conftest import running_worker
from tests.helpers import eventually, put, put_body
from tests.servers import CallbackReceiver, serve


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test's own, without persistence: FLUSHALL is a loss of data."""
    server = EmbeddedRedis(tmp_path / "redis", free_port(), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def lossy(settings: Settings, own_redis: EmbeddedRedis) -> Settings:
    return settings.model_copy(update={"redis_url": own_redis.url})


@contextlib.asynccontextmanager
async def api_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An API of its own (its own store, cache, instance number) on a real socket."""
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


def instance_of(task_id: str) -> int:
    parsed = TaskId.parse(task_id)
    assert parsed is not None, task_id
    return parsed.instance


def queue_id_of(task_id: str) -> int:
    parsed = TaskId.parse(task_id)
    assert parsed is not None, task_id
    return parsed.queue_id


async def test_puts_gets_and_jobs_go_on_through_both_apis_after_redis_comes_back_empty(
    lossy: Settings, own_redis: EmbeddedRedis, receiver: tuple[str, CallbackReceiver]
) -> None:
    url, inbox = receiver
    async with (
        api_process(lossy) as a,
        api_process(lossy) as b,
        running_worker(lossy),
        Redis.from_url(own_redis.url) as redis,
    ):
        # Before the loss both APIs cache both queues: old-a has id 1, old-b id 2.
        before = [await put(a, put_body("old-a", url))]
        before += [
            await put(b, put_body("old-b", url)),
            await put(b, put_body("old-a", url)),
            await put(a, put_body("old-b", url)),
        ]
        assert [queue_id_of(task_id) for task_id in before] == [1, 2, 1, 2]
        await inbox.wait_for(len(before))

        await redis.flushall()

        accepted: dict[str, tuple[str, httpx.AsyncClient]] = {}

        async def readable_from_both() -> None:
            """Every task accepted since the loss: 200 from either API, under its own queue."""
            for task_id, (queue, _) in accepted.items():
                for name, client in (("A", a), ("B", b)):
                    response = await client.get(f"/v1/queue/{task_id}")
                    assert response.status_code == 200, (name, task_id, queue, response.text)
                    assert response.json()["data"]["queue"] == queue, (name, task_id)

        # API B registers a new queue first: it takes id 1, the id A still caches for old-a.
        first = await put(b, put_body("new-b", url, text="first after the loss"))
        assert queue_id_of(first) == 1
        accepted[first] = ("new-b", b)
        # A's first put after the loss names old-a, whose id it believes is 1: still 200,
        # under another id (2, which B still caches as old-b's).
        moved = await put(a, put_body("old-a", url))
        assert queue_id_of(moved) not in (1, 0)
        accepted[moved] = ("old-a", a)
        await readable_from_both()
        # Every other combination, each API with its stale cache.
        for client, queue in [(b, "old-b"), (a, "old-b"), (b, "old-a"), (a, "new-b")]:
            accepted[await put(client, put_body(queue, url))] = (queue, client)
        # A blocking put after the loss is answered too (the worker found the new streams).
        blocking = await a.post(
            "/v1/queue/put",
            json=put_body("old-b", level=0, mode="blocking", timeout=10),
            timeout=15,
        )
        assert blocking.status_code == 200, blocking.text
        assert "choices" in blocking.json()
        accepted[blocking.headers["x-task-id"]] = ("old-b", a)
        await readable_from_both()

        # Every callback job accepted after the loss runs and calls back.
        callbacks_after = [
            task_id for task_id in accepted if task_id != blocking.headers["x-task-id"]
        ]
        received = await inbox.wait_for(len(before) + len(callbacks_after), timeout=15)
        by_task = {callback["task_id"]: callback for callback in received}
        for task_id in callbacks_after:
            assert task_id in by_task, f"no callback for {task_id}"
            assert by_task[task_id]["status"] == "succeeded", by_task[task_id]

    # Task ids stay unique, and each API process's ids carry its own instance number.
    every_id = before + list(accepted)
    assert len(set(every_id)) == len(every_id)
    instances_a = {instance_of(t) for t, (_, client) in accepted.items() if client is a}
    instances_b = {instance_of(t) for t, (_, client) in accepted.items() if client is b}
    assert len(instances_a) == 1
    assert len(instances_b) == 1
    assert instances_a != instances_b


async def test_instance_numbers_are_held_again_and_a_new_process_takes_another(
    lossy: Settings, own_redis: EmbeddedRedis, receiver: tuple[str, CallbackReceiver]
) -> None:
    keys = Keys(lossy.key_prefix)
    job = put_body("leases", receiver[0])  # no worker here: the jobs wait
    async with (
        api_process(lossy) as a,
        api_process(lossy) as b,
        Redis.from_url(own_redis.url) as redis,
    ):
        numbers = [instance_of(await put(client, job)) for client in (a, b)]
        assert numbers[0] != numbers[1]
        await redis.flushall()

        async def held_again() -> bool:
            return all([await redis.exists(keys.instance_lease(n)) for n in numbers])

        # Each running process takes its own number again at its next renewal (every 5 s).
        await eventually(held_again, timeout=10, interval=0.1, what="A's and B's leases")
        # So a process started after the loss cannot draw A's or B's number.
        async with api_process(lossy) as c:
            third = instance_of(await put(c, job))
        assert third not in numbers
        again = [instance_of(await put(client, job)) for client in (a, b)]
        assert again == numbers
