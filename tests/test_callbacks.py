"""Callback delivery past the happy path: dead letters, re-delivery, the overdue sweep."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import httpx
from redis.asyncio import Redis

from queue_service.settings import Settings
from queue_service.store.keys import Keys
from tests.helpers import eventually, put, put_body, view, wait_view
from tests.servers import CallbackReceiver
from workers.callbacks import sweep_overdue_callbacks
from workers.dead_letters import dead_letters

from .conftest import running_worker

job = partial(put_body, "callbacks")


async def test_a_given_up_callback_is_a_dead_letter_and_can_be_redelivered(
    api: httpx.AsyncClient,
    settings: Settings,
    receiver: tuple[str, CallbackReceiver],
    redis: Redis,
    capsys: Any,
) -> None:
    url, inbox = receiver
    inbox.fail_first = 2
    few = settings.model_copy(update={"callback_max_attempts": 2})
    async with running_worker(few):
        task_id = await put(api, job(url))
        await wait_view(api, task_id, lambda v: v["callback"]["status"] == "failed", timeout=10)
        assert inbox.received == []
        assert await dead_letters(few, redeliver=False) == 1
        assert task_id in capsys.readouterr().out
        ttl = await redis.ttl(Keys(few.key_prefix).task("callbacks", task_id))
        assert ttl > few.result_retention  # kept for the dead-letter retention
        assert await dead_letters(few, redeliver=True) == 1
        (callback,) = await inbox.wait_for(1)
    assert callback["task_id"] == task_id
    assert await dead_letters(few, redeliver=False) == 0
    assert (await view(api, task_id))["callback"]["status"] == "delivered"


async def test_a_callback_left_unsettled_by_a_dead_worker_is_resent_by_the_sweep(
    api: httpx.AsyncClient,
    settings: Settings,
    receiver: tuple[str, CallbackReceiver],
    redis: Redis,
) -> None:
    url, inbox = receiver
    async with running_worker(settings) as worker:
        task_id = await put(api, job(url))
        await wait_view(api, task_id, lambda v: v["callback"]["status"] == "delivered", timeout=10)
        # As if the worker had died after storing the result, before calling back:
        keys = Keys(settings.key_prefix)
        await redis.zadd(keys.callbacks_due("callbacks"), {task_id: 0})
        await redis.hset(keys.task("callbacks", task_id), "callback_status", "")
        assert await sweep_overdue_callbacks(worker.ctx) == 1
        await inbox.wait_for(2)
        assert await sweep_overdue_callbacks(worker.ctx) == 0
    assert [c["task_id"] for c in inbox.received] == [task_id, task_id]
    assert await redis.zcard(keys.callbacks_due("callbacks")) == 0


async def test_delivered_callbacks_leave_nothing_due(
    api: httpx.AsyncClient,
    worker: Any,
    receiver: tuple[str, CallbackReceiver],
    redis: Redis,
    settings: Settings,
) -> None:
    url, inbox = receiver
    for _ in range(3):
        await put(api, job(url))
    await inbox.wait_for(3)
    keys = Keys(settings.key_prefix)

    async def nothing_due() -> bool:
        return not await redis.zcard(keys.callbacks_due("callbacks"))

    await eventually(nothing_due, timeout=5)


async def test_a_full_queue_answers_429_and_stores_nothing(
    settings: Settings, redis: Redis
) -> None:
    from queue_service.api.app import create_app
    from tests.servers import serve

    small = settings.model_copy(update={"max_waiting": 3})
    async with serve(create_app(small)) as url, httpx.AsyncClient(base_url=url) as client:
        for _ in range(3):
            assert (
                await client.post("/v1/queue/put", json=job("http://127.0.0.1:9/cb"))
            ).status_code == 200
        response = await client.post("/v1/queue/put", json=job("http://127.0.0.1:9/cb"))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "5"
    assert "3 waiting jobs" in response.json()["message"]
    keys = Keys(settings.key_prefix)
    assert await redis.xlen(keys.stream("callbacks", 1)) == 3
    tasks = [k async for k in redis.scan_iter(match=keys.task("callbacks", "*"))]
    assert len(tasks) == 3


async def test_a_shutdown_does_not_cut_a_callback_in_half(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    """The receiver got it, so it must be recorded delivered (else the sweep sends it twice)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from tests.servers import serve

    arrived = asyncio.Event()

    async def slow_receiver(request: Request) -> Response:
        arrived.set()
        await asyncio.sleep(1.0)  # a slow receiver: still answering when the worker shuts down
        return Response(b"ok")

    app = Starlette(routes=[Route("/cb", slow_receiver, methods=["POST"])])
    hasty = settings.model_copy(update={"shutdown_grace": 0.1})
    async with serve(app) as url:
        async with running_worker(hasty):
            task_id = await put(api, job(f"{url}/cb"))
            await asyncio.wait_for(arrived.wait(), 10)
        # the worker has shut down while the receiver was still answering
        assert (await view(api, task_id))["callback"]["status"] == "delivered"
    keys = Keys(settings.key_prefix)
    assert await redis.zcard(keys.callbacks_due("callbacks")) == 0


def test_each_deployment_has_its_own_sweep(settings: Settings) -> None:
    """arq's cron job ids are global: two prefixes on one Redis must not share a sweep."""
    from workers.entry import worker_settings

    other = settings.model_copy(update={"key_prefix": f"{settings.key_prefix}x"})
    names = [worker_settings(s)["cron_jobs"][0].name for s in (settings, other)]
    assert names[0] != names[1]
    assert settings.key_prefix in names[0]
