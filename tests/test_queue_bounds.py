"""Queues are bounded: a ceiling on how many are registered, and idle ones are removed."""

from __future__ import annotations

from typing import Any

import httpx
from redis.asyncio import Redis

from queue_service.api.app import create_app
from queue_service.settings import Settings
from queue_service.store import Store
from queue_service.store.keys import Keys
from tests.conftest import running_worker
from tests.helpers import eventually, put, put_body, wait_view
from tests.servers import CallbackReceiver, serve
from workers.idle_queues import sweep_idle_queues


async def test_a_put_on_a_new_queue_beyond_the_ceiling_is_refused_clearly(
    settings: Settings,
) -> None:
    capped = settings.model_copy(update={"max_queues": 3})
    async with serve(create_app(capped)) as url, httpx.AsyncClient(base_url=url) as api:
        for name in ("one", "two", "three"):
            await put(api, put_body(name, "http://127.0.0.1:9/cb"))
        refused = await api.post("/v1/queue/put", json=put_body("four", "http://127.0.0.1:9/cb"))
        assert refused.status_code == 409
        assert "most queues (3)" in refused.json()["message"]
        await put(api, put_body("two", "http://127.0.0.1:9/cb"))  # known queues still work


async def queue_keys(redis: Redis, prefix: str, queue: str) -> list[bytes]:
    return [key async for key in redis.scan_iter(match=f"{prefix}:{{{queue}}}:*")]


async def test_an_idle_queue_is_removed_and_comes_back_on_the_next_put(
    settings: Settings,
    redis: Redis,
    prefix: str,
    receiver: tuple[str, CallbackReceiver],
) -> None:
    quick = settings.model_copy(update={"result_retention": 1, "queue_idle_ttl": 0})
    url, inbox = receiver
    async with (
        serve(create_app(quick)) as api_url,
        httpx.AsyncClient(base_url=api_url) as api,
        running_worker(quick) as worker,
    ):
        task_id = await put(api, put_body("idle", url, timeout=1))
        await inbox.wait_for(1)
        ctx: dict[str, Any] = worker.ctx
        # its record lives its timeout plus the retention (2 s), then the queue may go
        await eventually(lambda: sweep_idle_queues(ctx), timeout=10, interval=0.2)
        assert b"idle" not in await redis.hgetall(Keys(prefix).queue_ids)
        assert await queue_keys(redis, prefix, "idle") == []
        assert (await api.get(f"/v1/queue/{task_id}")).status_code == 404
        again = await put(api, put_body("idle", url))  # the API's cached id is stale now
        await wait_view(api, again, lambda seen: seen["status"] == "succeeded")


async def test_a_queue_with_a_waiting_job_is_never_removed(
    settings: Settings, redis: Redis, prefix: str
) -> None:
    quick = settings.model_copy(update={"result_retention": 1, "queue_idle_ttl": 0})
    async with serve(create_app(quick)) as api_url, httpx.AsyncClient(base_url=api_url) as api:
        task_id = await put(api, put_body("busy", "http://127.0.0.1:9/cb", timeout=1))

        async def record_expired() -> bool:  # 2 s: its timeout plus the retention
            return not await redis.exists(Keys(prefix).task("busy", task_id))

        await eventually(record_expired, timeout=10, interval=0.2)
        store = Store(redis, Keys(prefix), redis_url=quick.redis_url, retention_s=1)
        assert not await store.queues.remove_if_idle("busy", 0)  # its entry still waits
        assert b"busy" in await redis.hgetall(Keys(prefix).queue_ids)
