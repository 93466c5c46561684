"""Redis going away and coming back: clear errors meanwhile, recovery without restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from queue_service.api.app import create_app
from queue_service.settings import Settings
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


def job(callback_url: str | None, mode: str = "callback", **mock: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "queue": "outage",
        "endpoint": "/v1/chat/completions",
        "level": 0,
        "response_mode": mode,
        "data": {"model": "m", "messages": [{"role": "user", "content": "x"}], "mock": mock},
    }
    if callback_url:
        body["callback_url"] = callback_url
    return body


async def test_puts_get_503_while_redis_is_away_and_work_again_after(
    proxied: Settings, proxy: TcpProxy, receiver: tuple[str, CallbackReceiver]
) -> None:
    url, _ = receiver
    async with serve(create_app(proxied)) as api_url, httpx.AsyncClient(base_url=api_url) as api:
        assert (await api.post("/v1/queue/put", json=job(url))).status_code == 200
        await proxy.cut()
        response = await api.post("/v1/queue/put", json=job(url))
        assert response.status_code == 503
        assert "Redis" in response.json()["message"]
        await proxy.restore()
        async with asyncio.timeout(10):
            while (await api.post("/v1/queue/put", json=job(url))).status_code != 200:
                await asyncio.sleep(0.2)


async def test_a_blocking_request_in_flight_ends_with_a_clear_error(
    proxied: Settings, proxy: TcpProxy
) -> None:
    async with serve(create_app(proxied)) as api_url, httpx.AsyncClient(base_url=api_url) as api:
        waiting = asyncio.create_task(api.post("/v1/queue/put", json=job(None, "blocking")))
        await asyncio.sleep(0.3)  # queued: no worker runs
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
) -> None:
    url, inbox = receiver
    async with running_worker(proxied):
        assert (await api.post("/v1/queue/put", json=job(url))).status_code == 200
        await inbox.wait_for(1)
        await proxy.cut()
        await asyncio.sleep(2)
        await proxy.restore()
        assert (await api.post("/v1/queue/put", json=job(url))).status_code == 200
        await inbox.wait_for(2, timeout=20)
    assert [c["status"] for c in inbox.received] == ["succeeded", "succeeded"]
