"""Jobs that end without an answer of their upstream (queue_service/store/tasks.py `cancel`,
`time_out`; store/lua/stop.lua; api/waiting.py): past its timeout a job ends `timeout` in
every mode, `cancelled` is for explicit cancels and departed clients; both are counted in the
queue's totals and in /metrics, and a cancelled callback job says no callback will be sent."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import httpx
from redis.asyncio import Redis

from queue_service.settings import Settings
from queue_service.store.keys import Keys
from queue_service.timing import now_ms
from tests.helpers import eventually, put, put_body, view, wait_view
from tests.servers import CallbackReceiver

from .conftest import running_worker

QUEUE = "stopped"
MockUpstream = tuple[str, Any]
Receiver = tuple[str, CallbackReceiver]


def waiting_put(mode: str, timeout: int | None = None, **mock: Any) -> dict[str, Any]:
    return put_body(QUEUE, level=0, mode=mode, timeout=timeout, mock=mock)


async def totals(api: httpx.AsyncClient, level: str | None = None) -> dict[str, int]:
    """The queue's totals (of one level when given) from its stats."""
    stats = (await api.get(f"/v1/queue/{QUEUE}/stats")).json()["data"]
    counted: dict[str, int] = stats["totals"] if level is None else stats["levels"][level]["totals"]
    return counted


async def finished_metric(api: httpx.AsyncClient, status: str, level: int, mode: str) -> float:
    """`queue_finished_total` of this queue for one status, level and mode (0 when absent)."""
    text = (await api.get("/metrics")).text
    labels = f'level="{level}",mode="{mode}",queue="{QUEUE}",status="{status}"'
    found = re.search(rf"^queue_finished_total\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def the_task_id(redis: Redis, settings: Settings) -> str:
    """The id of the one task of the queue (for puts whose answer has not come)."""

    async def found() -> list[bytes]:
        pattern = Keys(settings.key_prefix).task(QUEUE, "*")
        return [key async for key in redis.scan_iter(match=pattern)]

    (key,) = await eventually(found, timeout=5, what="the task's record")
    return key.decode().rsplit(":", 1)[1]


async def leave(request: asyncio.Task[Any]) -> None:
    """The client goes away."""
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request


# -- counted --------------------------------------------------------------------------------


async def test_an_explicit_cancel_is_counted_and_sends_no_callback(
    api: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    url, inbox = receiver
    task_id = await put(api, put_body(QUEUE, url))
    cancelled = await api.post(f"/v1/queue/{task_id}/cancel")
    assert cancelled.status_code == 200
    seen = await view(api, task_id)
    assert (seen["status"], seen["status_code"]) == ("cancelled", 499)
    assert seen["callback"]["status"] == "not_sent"
    assert seen["callback"]["attempts"] == 0
    assert await totals(api) == {"put": 1, "cancelled": 1}
    assert await totals(api, "1") == {"put": 1, "cancelled": 1}
    assert await finished_metric(api, "cancelled", 1, "callback") == 1
    # and no callback is sent indeed: a worker runs the next job, not that one
    async with running_worker(settings):
        other = await put(api, put_body(QUEUE, url))
        (callback,) = await inbox.wait_for(1)
    assert callback["task_id"] == other
    assert (await view(api, task_id))["callback"]["status"] == "not_sent"


async def test_a_departed_blocking_client_is_counted_cancelled(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    request = asyncio.create_task(api.post("/v1/queue/put", json=waiting_put("blocking")))
    task_id = await the_task_id(redis, settings)  # queued: no worker runs
    await leave(request)

    async def counted() -> bool:
        return (await totals(api)).get("cancelled") == 1

    await eventually(counted, timeout=5)
    assert await totals(api) == {"put": 1, "cancelled": 1}
    assert await finished_metric(api, "cancelled", 0, "blocking") == 1
    seen = await view(api, task_id)
    assert (seen["status"], seen["status_code"]) == ("cancelled", 499)


async def test_a_departed_streaming_client_is_counted_cancelled(
    api: httpx.AsyncClient, worker: Any, mock_upstream: MockUpstream
) -> None:
    body = waiting_put("streaming", tokens=1000, token_latency=0.02)
    async with api.stream("POST", "/v1/queue/put", json=body) as response:
        task_id = response.headers["x-task-id"]
        lines = response.aiter_lines()
        for _ in range(3):
            await anext(lines)
    # the client is gone
    await wait_view(api, task_id, lambda v: v["status"] == "cancelled", timeout=5)

    async def counted() -> dict[str, int] | None:
        seen = await totals(api)
        return seen if seen.get("cancelled") == 1 else None

    assert await eventually(counted, timeout=5) == {"put": 1, "cancelled": 1}
    assert await finished_metric(api, "cancelled", 0, "streaming") == 1


async def test_a_blocking_timeout_ends_timeout_and_is_counted(api: httpx.AsyncClient) -> None:
    """No worker runs: the job waits queued until its timeout passes."""
    response = await api.post("/v1/queue/put", json=waiting_put("blocking", timeout=1))
    assert response.status_code == 408
    seen = await view(api, response.headers["x-task-id"])
    assert (seen["status"], seen["status_code"]) == ("timeout", 408)
    assert seen["result"]["error"]["type"] == "timeout"
    assert await totals(api) == {"put": 1, "timeout": 1}
    assert await finished_metric(api, "timeout", 0, "blocking") == 1
    assert await finished_metric(api, "cancelled", 0, "blocking") == 0


async def test_a_streaming_timeout_before_the_first_event_ends_timeout_and_is_counted(
    api: httpx.AsyncClient,
) -> None:
    """No worker runs: no event comes before the timeout passes."""
    response = await api.post("/v1/queue/put", json=waiting_put("streaming", timeout=1))
    assert response.status_code == 408
    assert "within its timeout" in response.json()["message"]
    seen = await view(api, response.headers["x-task-id"])
    assert (seen["status"], seen["status_code"]) == ("timeout", 408)
    assert await totals(api) == {"put": 1, "timeout": 1}
    assert await finished_metric(api, "timeout", 0, "streaming") == 1


# -- timeout or cancelled -------------------------------------------------------------------


async def test_a_blocking_client_that_disconnects_ends_cancelled_with_499(
    api: httpx.AsyncClient,
    worker: Any,
    mock_upstream: MockUpstream,
    settings: Settings,
    redis: Redis,
) -> None:
    request = asyncio.create_task(
        api.post("/v1/queue/put", json=waiting_put("blocking", hang=True))
    )
    state = mock_upstream[1].state
    await eventually(lambda: state.mock_requests, timeout=5)  # running
    task_id = await the_task_id(redis, settings)
    await leave(request)
    seen = await wait_view(api, task_id, lambda v: v["status"] != "running", timeout=5)
    assert (seen["status"], seen["status_code"]) == ("cancelled", 499)
    assert seen["result"]["error"]["message"] == "the client disconnected"
    await eventually(lambda: state.mock_requests[0].response_id in state.mock_disconnects)


async def test_an_explicit_cancel_of_a_waited_for_job_ends_cancelled(
    api: httpx.AsyncClient,
    worker: Any,
    mock_upstream: MockUpstream,
    settings: Settings,
    redis: Redis,
) -> None:
    request = asyncio.create_task(
        api.post("/v1/queue/put", json=waiting_put("blocking", hang=True))
    )
    state = mock_upstream[1].state
    await eventually(lambda: state.mock_requests, timeout=5)  # running
    task_id = await the_task_id(redis, settings)
    assert (await api.post(f"/v1/queue/{task_id}/cancel")).status_code == 200
    response = await asyncio.wait_for(request, 5)
    assert response.status_code == 499
    assert response.json()["error"]["type"] == "cancelled"
    seen = await view(api, task_id)
    assert (seen["status"], seen["status_code"]) == ("cancelled", 499)
    assert await totals(api) == {"put": 1, "cancelled": 1}


async def test_a_callback_job_past_its_deadline_before_it_starts_ends_timeout(
    api: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    url, inbox = receiver
    task_id = await put(api, put_body(QUEUE, url, timeout=1))
    deadline = (await view(api, task_id))["deadline"]
    await eventually(lambda: now_ms() > deadline, timeout=5, interval=0.05)
    async with running_worker(settings):
        (callback,) = await inbox.wait_for(1)
        seen = await wait_view(api, task_id, lambda v: v["callback"]["status"] == "delivered")
    assert (callback["status"], callback["status_code"]) == ("timeout", 408)
    assert (seen["status"], seen["status_code"]) == ("timeout", 408)
    assert await totals(api) == {"put": 1, "timeout": 1}


async def test_a_callback_job_running_past_its_deadline_ends_timeout(
    api: httpx.AsyncClient, worker: Any, mock_upstream: MockUpstream, receiver: Receiver
) -> None:
    url, inbox = receiver
    task_id = await put(api, put_body(QUEUE, url, timeout=1, mock={"hang": True}))
    (callback,) = await inbox.wait_for(1, timeout=5)
    assert (callback["status"], callback["status_code"]) == ("timeout", 408)
    seen = await wait_view(api, task_id, lambda v: v["callback"]["status"] == "delivered")
    assert (seen["status"], seen["status_code"]) == ("timeout", 408)
    state = mock_upstream[1].state
    await eventually(lambda: state.mock_requests[0].response_id in state.mock_disconnects)
    assert await totals(api) == {"put": 1, "timeout": 1}
    assert await finished_metric(api, "timeout", 1, "callback") == 1
