"""Redis going away and coming back: clear errors meanwhile, recovery without restarts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from functools import partial
from urllib.parse import urlsplit

import httpx
import pytest
from redis.asyncio import Redis

from queue_service.api.app import create_app
from queue_service.settings import Settings
from queue_service.store.keys import Keys
from tests.helpers import eventually, put, put_body
from tests.servers import CallbackReceiver, TcpProxy, serve

from .conftest import running_worker


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(redis_url)
    running = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    await running.start()
    yield running
    await running.cut()


@pytest.fixture
def proxied(settings: Settings, proxy: TcpProxy, redis_url: str) -> Settings:
    path = urlsplit(redis_url).path or "/0"
    return settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{proxy.port}{path}"})


job = partial(put_body, "outage", level=0, mode="callback", mock={})


def logged(caplog: pytest.LogCaptureFixture, text: str) -> int:
    """How many records logged so far contain `text`."""
    return sum(text in record.getMessage() for record in caplog.records)


async def test_puts_get_503_while_redis_is_away_and_work_again_after(
    proxied: Settings, proxy: TcpProxy, receiver: tuple[str, CallbackReceiver]
) -> None:
    url, _ = receiver
    async with serve(create_app(proxied)) as api_url, httpx.AsyncClient(base_url=api_url) as api:
        await put(api, job(url))
        await proxy.cut()
        response = await api.post("/v1/queue/put", json=job(url))
        assert response.status_code == 503
        assert "Redis" in response.json()["message"]
        await proxy.restore()

        async def accepted() -> bool:
            return (await api.post("/v1/queue/put", json=job(url))).status_code == 200

        await eventually(accepted, timeout=10, interval=0.2)


async def test_a_blocking_request_in_flight_ends_with_a_clear_error(
    proxied: Settings, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="queue_service.store.tasks")
    async with serve(create_app(proxied)) as api_url, httpx.AsyncClient(base_url=api_url) as api:
        waiting = asyncio.create_task(api.post("/v1/queue/put", json=job(None, mode="blocking")))
        # queued (no worker runs): the API logs it once Redis answered, then it waits
        await eventually(lambda: logged(caplog, "queued (queue outage, level 0, mode blocking)"))
        await proxy.cut()
        response = await asyncio.wait_for(waiting, 10)
        assert response.status_code == 503
        assert "lost the connection to Redis" in response.json()["message"]
        await proxy.restore()


async def test_a_worker_carries_on_after_an_outage_without_a_restart(
    proxied: Settings,
    proxy: TcpProxy,
    api: httpx.AsyncClient,
    receiver: tuple[str, CallbackReceiver],
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, inbox = receiver
    async with running_worker(proxied):
        await put(api, job(url))
        await inbox.wait_for(1)
        await proxy.cut()

        def outage_felt() -> bool:
            """The worker's reads failed, and failed again on retrying while Redis was away."""
            return (
                logged(caplog, "stream read failed") >= 2 and logged(caplog, "arq poll failed") >= 1
            )

        await eventually(outage_felt, timeout=10)
        await proxy.restore()
        await put(api, job(url))
        await inbox.wait_for(2, timeout=20)

        async def listening_again() -> bool:
            """Its announcement listener has subscribed again too (not in its retry pause)."""
            channel = Keys(proxied.key_prefix).cancel_channel
            ((_, subscribed),) = await redis.pubsub_numsub(channel)
            return bool(subscribed)

        await eventually(listening_again, timeout=10)
    assert [c["status"] for c in inbox.received] == ["succeeded", "succeeded"]
