"""Shared fixtures: a real Redis, per-test key prefixes, the mock upstream, API and worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.worker import Worker
from redis.asyncio import Redis

from queue_service.api.app import create_app
from queue_service.dev.embedded_redis import EmbeddedRedis, free_port
from queue_service.mock_upstream import MockConfig, create_mock_app
from queue_service.settings import Settings
from queue_service.store.probe import redis_answers
from tests.helpers import eventually
from tests.servers import CallbackReceiver, serve
from workers.entry import ResilientWorker, worker_settings

LOOPBACK = "127.0.0.0/8,::1/128"
"""Tests call back to receivers on loopback, which callbacks refuse by default."""


def process_env(redis_url: str, prefix: str, **settings: str) -> dict[str, str]:
    """The environment of a queue-service process of this test's own (its Redis and key
    prefix, loopback callbacks allowed), plus `QUEUE_<NAME>` for each keyword."""
    return {
        **os.environ,
        "QUEUE_REDIS_URL": redis_url,
        "QUEUE_KEY_PREFIX": prefix,
        "QUEUE_CALLBACK_ALLOWED_NETWORKS": LOOPBACK,
        **{f"QUEUE_{name.upper()}": value for name, value in settings.items()},
    }


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """QUEUE_REDIS_URL, else the local Redis, else an embedded redis-server for this run."""
    configured = os.environ.get("QUEUE_REDIS_URL")
    if configured:
        yield configured
        return
    if redis_answers(port=6379):
        yield "redis://127.0.0.1:6379/0"
        return
    embedded = EmbeddedRedis(Path(tmp_path_factory.mktemp("redis")), free_port(), appendonly=False)
    embedded.start()
    try:
        yield embedded.url
    finally:
        embedded.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own, so tests never see each other's keys; removed after."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    client = Redis.from_url(redis_url)
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
async def mock_upstream() -> AsyncIterator[tuple[str, Any]]:
    app = create_mock_app(MockConfig())
    async with serve(app) as url:
        yield url, app


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, CallbackReceiver]]:
    inbox = CallbackReceiver()
    async with serve(inbox.app()) as url:
        yield f"{url}/callback", inbox


@pytest.fixture
def settings(redis_url: str, prefix: str, mock_upstream: tuple[str, Any]) -> Settings:
    return Settings(
        redis_url=redis_url,
        key_prefix=prefix,
        upstream_url=mock_upstream[0],
        registry_refresh_interval=0.2,
        callback_backoff=0.05,
        upstream_retry_backoff=0.05,
        callback_allowed_networks=LOOPBACK,
        shutdown_grace=2.0,
    )


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the API over a real socket."""
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, queues: frozenset[str] | None = None
) -> AsyncIterator[Worker]:
    """An arq worker with our stream consumer, in this event loop."""
    worker = ResilientWorker(**{**worker_settings(settings, queues), "handle_signals": False})
    task = asyncio.create_task(worker.async_run())

    def started() -> bool:
        if task.done():
            task.result()  # it failed to start: its own error
        return "runtime" in worker.ctx

    await eventually(started, timeout=30, interval=0.01, what="the worker to start")
    try:
        yield worker
    finally:
        worker.allow_pick_jobs = False  # let arq jobs under way (callback retries) end first
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        await worker.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[Worker]:
    async with running_worker(settings) as running:
        yield running
