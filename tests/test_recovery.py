"""No accepted job is lost: dead workers, long jobs, shutdowns, repeated deliveries."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from queue_service.models import Status
from queue_service.settings import Settings
from queue_service.store import Store
from queue_service.store.keys import CONSUMER_GROUP, Keys
from queue_service.store.records import Outcome
from tests.helpers import eventually, put, put_body, wait_until_up
from tests.servers import CallbackReceiver

from .conftest import process_env, running_worker


def job(text: str, callback_url: str, **mock: Any) -> dict[str, Any]:
    return put_body("recovery", callback_url, text=text, mock=mock)


async def test_the_first_outcome_wins(
    redis: Redis, redis_url: str, prefix: str, api: httpx.AsyncClient
) -> None:
    task_id = await put(api, job("x", "http://127.0.0.1:9/cb"))
    tasks = Store(redis, Keys(prefix), redis_url=redis_url, retention_s=60).tasks
    record = await tasks.load("recovery", task_id)
    assert record is not None
    first = Outcome(Status.SUCCEEDED, 200, b'{"first":true}')
    second = Outcome(Status.FAILED, 500, b'{"second":true}')
    assert await tasks.finish(record, record.entry, first)
    assert not await tasks.finish(record, record.entry, second)
    stored = await tasks.load("recovery", task_id)
    assert stored is not None
    assert stored.outcome == first


async def test_a_long_job_on_a_live_worker_is_not_taken_over(
    api: httpx.AsyncClient,
    redis: Redis,
    prefix: str,
    settings: Settings,
    receiver: tuple[str, CallbackReceiver],
    mock_upstream: tuple[str, Any],
) -> None:
    url, inbox = receiver
    quick = settings.model_copy(update={"visibility_timeout": 0.6})
    async with running_worker(quick) as first, running_worker(quick) as second:
        await put(api, job("long", url, ttft=2.5))
        (callback,) = await inbox.wait_for(1, timeout=10)

        async def all_done() -> bool:
            """Neither worker runs a job and the group holds none: none can be taken over."""
            busy = sum(w.ctx["runtime"].consumer.in_flight for w in (first, second))
            stream = Keys(prefix).stream("recovery", 1)
            return not busy and (await redis.xpending(stream, CONSUMER_GROUP))["pending"] == 0

        await eventually(all_done, timeout=10)
    assert callback["status"] == "succeeded"
    assert len(mock_upstream[1].state.mock_requests) == 1
    assert len(inbox.received) == 1


async def test_a_job_delivered_too_often_fails_instead_of_looping(
    api: httpx.AsyncClient,
    redis: Redis,
    prefix: str,
    settings: Settings,
    receiver: tuple[str, CallbackReceiver],
    mock_upstream: tuple[str, Any],
) -> None:
    url, inbox = receiver
    task_id = await put(api, job("doomed", url))
    stream = Keys(prefix).stream("recovery", 1)
    reply = await redis.xreadgroup(CONSUMER_GROUP, "ghost-0", {stream: ">"}, count=1)
    entry_id = reply[0][1][0][0]
    for n in range(1, 3):  # two more workers took it and died
        await redis.xclaim(stream, CONSUMER_GROUP, f"ghost-{n}", 0, [entry_id])
    tuned = settings.model_copy(update={"visibility_timeout": 0.2, "max_deliveries": 3})
    async with running_worker(tuned):  # it takes the entry over once idle for 0.2 s
        (callback,) = await inbox.wait_for(1, timeout=10)
    assert callback["task_id"] == task_id
    assert callback["status"] == "failed"
    assert callback["body"]["error"]["message"] == "worker lost 3 times"
    assert mock_upstream[1].state.mock_requests == []
    assert await redis.xpending(stream, CONSUMER_GROUP) == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }


async def test_shutdown_finishes_short_jobs_and_hands_long_ones_back_at_once(
    api: httpx.AsyncClient,
    settings: Settings,
    receiver: tuple[str, CallbackReceiver],
    mock_upstream: tuple[str, Any],
) -> None:
    url, inbox = receiver
    patient = settings.model_copy(update={"shutdown_grace": 1.0, "visibility_timeout": 60})
    async with running_worker(patient) as first:
        short = await put(api, job("short", url, ttft=0.5))
        long = await put(api, job("long", url, ttft=3))
        runtime = first.ctx["runtime"]
        await eventually(lambda: runtime.consumer.in_flight >= 2, timeout=5)
    # The first worker is gone: "short" finished in its grace, "long" went back to the queue.
    assert [c["task_id"] for c in inbox.received] == [short]
    started = time.monotonic()
    async with running_worker(patient):
        await inbox.wait_for(2, timeout=10)
    assert time.monotonic() - started < 6  # not after the 60 s visibility timeout
    assert {c["task_id"]: c["status"] for c in inbox.received} == {
        short: "succeeded",
        long: "succeeded",
    }


async def test_a_killed_worker_process_loses_no_job(
    api: httpx.AsyncClient,
    redis: Redis,
    redis_url: str,
    prefix: str,
    mock_upstream: tuple[str, Any],
    receiver: tuple[str, CallbackReceiver],
    settings: Settings,
) -> None:
    url, inbox = receiver
    env = process_env(redis_url, prefix, upstream_url=mock_upstream[0], visibility_timeout="1")
    command = [str(Path(sys.executable).parent / "queue-service"), "worker"]
    victim = await asyncio.to_thread(subprocess.Popen, command, env=env, stdin=subprocess.DEVNULL)
    try:
        await eventually(
            lambda: redis.exists(Keys(prefix).arq_health_check), timeout=30, interval=0.05
        )
        ids = [await put(api, job(f"job {n}", url, ttft=1.0)) for n in range(5)]
        await eventually(lambda: len(mock_upstream[1].state.mock_requests) >= 5, timeout=10)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    finally:
        if victim.poll() is None:
            victim.kill()
    async with running_worker(settings.model_copy(update={"visibility_timeout": 1.0})):
        await inbox.wait_for(5, timeout=20)
    assert sorted(c["task_id"] for c in inbox.received) == sorted(ids)
    assert {c["status"] for c in inbox.received} == {"succeeded"}


async def test_the_api_lets_a_blocking_wait_finish_on_sigterm(
    settings: Settings, mock_upstream: tuple[str, Any]
) -> None:
    from queue_service.dev.embedded_redis import free_port

    port = free_port()
    env = process_env(settings.redis_url, settings.key_prefix, shutdown_grace="10")
    command = [str(Path(sys.executable).parent / "queue-service"), "api", "--port", str(port)]
    api = await asyncio.to_thread(subprocess.Popen, command, env=env, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        async with running_worker(settings), httpx.AsyncClient(base_url=url, timeout=20) as client:
            await wait_until_up(f"{url}/healthz")
            body = {
                "queue": "recovery",
                "endpoint": "/v1/chat/completions",
                "level": 0,
                "response_mode": "blocking",
                "data": {"model": "m", "messages": [{"role": "user", "content": "slow"}],
                         "mock": {"ttft": 1.5}},
            }  # fmt: skip
            waiting = asyncio.create_task(client.post("/v1/queue/put", json=body))
            # the job runs (the upstream takes 1.5 s to answer): the API waits for its result
            await eventually(lambda: mock_upstream[1].state.mock_requests)
            api.send_signal(signal.SIGTERM)
            response = await waiting
            assert response.status_code == 200
            assert response.json()["object"] == "chat.completion"
            assert await asyncio.to_thread(api.wait, 15) in (
                0,
                -signal.SIGTERM,
            )  # uvicorn re-raises it
    finally:
        if api.poll() is None:
            api.kill()
