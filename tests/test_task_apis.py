"""Jobs on upstream task APIs (Midjourney, Suno): submitted once, then followed in batches
without holding a slot, in every response mode, through failures, refusals, timeouts, cancels
and a worker killed while following."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from arq.worker import Worker

from queue_service.settings import Settings
from queue_service.store.keys import Keys
from tests.helpers import eventually, put, view, wait_view
from tests.servers import CallbackReceiver
from tests.task_api_helpers import (
    IMAGINE,
    MJ_READ,
    MUSIC,
    SUNO_READ,
    UPLOAD,
    job,
    read_ids,
    requests_to,
)

from .conftest import process_env, running_worker


@pytest.fixture
def quick(settings: Settings) -> Settings:
    """Reads a followed task every 0.1 s after a change, at most every 0.5 s."""
    return settings.model_copy(update={"task_poll_interval": 0.1, "task_poll_max_interval": 0.5})


@pytest.fixture
async def follower(quick: Settings) -> AsyncIterator[Worker]:
    async with running_worker(quick) as running:
        yield running


async def test_a_callback_job_shows_its_progress_then_delivers_the_final_task_object(
    api: httpx.AsyncClient,
    follower: Worker,
    mock_upstream: tuple[str, Any],
    receiver: tuple[str, CallbackReceiver],
) -> None:
    url, inbox = receiver
    task_id = await put(api, job(IMAGINE, "callback", url, duration=1.5, steps=3))
    running = await wait_view(api, task_id, lambda v: v.get("progress") not in (None, "0%"))
    assert running["status"] == "running"
    assert running["upstream_task"]["status"] == "IN_PROGRESS"
    upstream_id = running["upstream_task_id"]
    stats = (await api.get("/v1/queue/art/stats")).json()["data"]
    assert stats["following_upstream"] == 1
    assert stats["levels"]["1"]["in_flight"] == 0  # no entry, no slot held while it runs
    (callback,) = await inbox.wait_for(1)
    assert (callback["task_id"], callback["status"]) == (task_id, "succeeded")
    final = callback["body"]
    assert (final["id"], final["status"], final["progress"]) == (upstream_id, "SUCCESS", "100%")
    assert final["imageUrl"]
    assert final["buttons"]
    assert final["prompt"] == "a cat in a hat"
    assert len(requests_to(mock_upstream, IMAGINE)) == 1
    finished = await view(api, task_id)
    assert (finished["status"], finished["result"]["id"]) == ("succeeded", upstream_id)
    # GET shows the final upstream task, not the last progress seen on the way.
    assert (finished["progress"], finished["upstream_task"]) == ("100%", final)
    stats = (await api.get("/v1/queue/art/stats")).json()["data"]
    assert stats["following_upstream"] == 0


async def test_blocking_mode_answers_the_finished_suno_task(
    api: httpx.AsyncClient, follower: Worker, mock_upstream: tuple[str, Any]
) -> None:
    response = await api.post("/v1/queue/put", json=job(MUSIC, "blocking", duration=0.5))
    assert response.status_code == 200, response.text
    task = response.json()
    assert (task["status"], task["action"], task["progress"]) == ("SUCCESS", "MUSIC", "100%")
    assert [clip["status"] for clip in task["data"]] == ["complete", "complete"]
    assert all(clip["audio_url"] for clip in task["data"])
    assert read_ids(mock_upstream, SUNO_READ)[-1] == task["task_id"]
    assert len(requests_to(mock_upstream, MUSIC)) == 1


async def test_streaming_sends_each_progress_change_then_the_final_object(
    api: httpx.AsyncClient, follower: Worker
) -> None:
    body = job(IMAGINE, "streaming", duration=1.2, steps=4)
    async with api.stream("POST", "/v1/queue/put", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = b"".join([chunk async for chunk in response.aiter_bytes()])
    events = [part for part in raw.split(b"\n\n") if part]
    assert all(event.startswith(b"event: progress\ndata: ") for event in events)
    tasks = [orjson.loads(event.split(b"data: ", 1)[1]) for event in events]
    assert tasks[-1]["status"] == "SUCCESS"
    assert tasks[-1]["progress"] == "100%"
    assert len({orjson.dumps(task) for task in tasks}) == len(tasks)  # one event per change
    percents = [int(task["progress"].rstrip("%")) for task in tasks]
    assert percents == sorted(percents)
    assert len(tasks) >= 3  # progress steps seen on the way, not just the end


async def test_a_failed_upstream_task_fails_the_job_with_the_task_object(
    api: httpx.AsyncClient,
    follower: Worker,
    receiver: tuple[str, CallbackReceiver],
) -> None:
    response = await api.post(
        "/v1/queue/put", json=job(IMAGINE, "blocking", duration=0.3, fail="banned image")
    )
    assert response.status_code == 502
    assert (response.json()["status"], response.json()["failReason"]) == (
        "FAILURE",
        "banned image",
    )
    url, inbox = receiver
    task_id = await put(api, job(MUSIC, "callback", url, duration=0.3, fail="no credits"))
    (callback,) = await inbox.wait_for(1)
    assert (callback["task_id"], callback["status"], callback["status_code"]) == (
        task_id,
        "failed",
        502,
    )
    assert callback["body"]["fail_reason"] == "no credits"


@pytest.mark.parametrize(
    ("endpoint", "code", "status_code", "submits"),
    [
        (IMAGINE, 24, 422, 1),  # prompt refused: final, never retried
        (IMAGINE, 0, 422, 1),  # not a success code: final
        (IMAGINE, 23, 429, 4),  # the upstream's queue is full: retried, then given up
        (IMAGINE, 9, 503, 4),  # "system error, retry later": nothing submitted, retried
        (MUSIC, "error", 422, 1),  # Suno: anything but "success" is a refusal
    ],
)
async def test_a_refused_submit_ends_the_job_with_the_upstream_answer(
    api: httpx.AsyncClient,
    follower: Worker,
    mock_upstream: tuple[str, Any],
    endpoint: str,
    code: int | str,
    status_code: int,
    submits: int,
) -> None:
    response = await api.post("/v1/queue/put", json=job(endpoint, "blocking", submit_code=code))
    assert response.status_code == status_code
    assert response.json()["code"] == code
    assert len(requests_to(mock_upstream, endpoint)) == submits
    assert not read_ids(mock_upstream, MJ_READ) + read_ids(mock_upstream, SUNO_READ)


@pytest.mark.parametrize(
    ("endpoint", "answer"),
    [
        (IMAGINE, {"code": 1, "description": "Submit success", "result": None}),
        (IMAGINE, {"code": 22, "result": ""}),
        (IMAGINE, {"description": "no code", "result": "1320098173412546"}),
        (IMAGINE, ["not", "an", "object"]),
        (MUSIC, {"code": "success", "data": None}),
        (UPLOAD, {"code": 1, "description": "success", "result": []}),
    ],
)
async def test_a_submit_answer_without_what_the_job_needs_fails_it_502(
    api: httpx.AsyncClient,
    follower: Worker,
    mock_upstream: tuple[str, Any],
    endpoint: str,
    answer: Any,
) -> None:
    """A success with no task to follow (or, for an upload, no result), or an answer with
    no code: the job fails, sent once (the upstream may have a task of it)."""
    body = job(endpoint, "blocking", submit_answer=answer)
    if endpoint == UPLOAD:
        body["data"]["base64Array"] = ["data:image/png;base64,AAAA"]
    response = await api.post("/v1/queue/put", json=body)
    assert response.status_code == 502
    assert response.json() == answer
    assert len(requests_to(mock_upstream, endpoint)) == 1
    assert not read_ids(mock_upstream, MJ_READ) + read_ids(mock_upstream, SUNO_READ)


async def test_an_upload_answers_at_once_and_is_never_followed(
    api: httpx.AsyncClient, follower: Worker, mock_upstream: tuple[str, Any]
) -> None:
    body = job(UPLOAD, "blocking")
    body["data"]["base64Array"] = ["data:image/png;base64,AAAA", "data:image/png;base64,BBBB"]
    response = await api.post("/v1/queue/put", json=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["result"]) == 2
    assert not read_ids(mock_upstream, MJ_READ)


@pytest.mark.parametrize(
    "endpoint",
    [
        "/mj/task/list-by-condition",
        "/mj/task/1320098173412546/fetch",
        "/mj/task/1320098173412546/image-seed",
        "/suno/fetch",
        "/suno/fetch/0a1b2c3d-4e5f",
    ],
)
async def test_task_reads_cannot_be_queued(api: httpx.AsyncClient, endpoint: str) -> None:
    body = job(IMAGINE, "callback", "http://127.0.0.1:9/cb")
    body["endpoint"] = endpoint
    response = await api.post("/v1/queue/put", json=body)
    assert response.status_code == 400
    message = response.json()["message"]
    assert "not served" not in message
    assert ("GET /v1/queue/{task_id}" in message) or ("ask the upstream directly" in message)
    if endpoint in ("/mj/task/list-by-condition", "/suno/fetch"):  # a route of its own too
        direct = await api.post(endpoint, json={"ids": ["1"]})
        assert direct.status_code == 400
        assert "GET /v1/queue/{task_id}" in direct.json()["error"]["message"]


@pytest.mark.parametrize("code", [21, 22])
async def test_exists_and_queued_upstream_are_followed_like_a_submit(
    api: httpx.AsyncClient, follower: Worker, mock_upstream: tuple[str, Any], code: int
) -> None:
    body = job(IMAGINE, "blocking", duration=0.3, submit_code=code)
    response = await api.post("/v1/queue/put", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "SUCCESS"
    assert len(requests_to(mock_upstream, IMAGINE)) == 1


async def test_the_timeout_ends_the_job_and_its_following(
    api: httpx.AsyncClient,
    follower: Worker,
    mock_upstream: tuple[str, Any],
    receiver: tuple[str, CallbackReceiver],
) -> None:
    url, inbox = receiver
    task_id = await put(api, job(IMAGINE, "callback", url, timeout=1, duration=60))
    (callback,) = await inbox.wait_for(1, timeout=10)
    assert (callback["status"], callback["status_code"]) == ("timeout", 408)
    assert "the upstream has no cancel" in callback["body"]["error"]["message"]
    finished = await view(api, task_id)
    await assert_no_more_reads(api, follower, mock_upstream, finished["upstream_task_id"])


async def test_a_cancel_stops_the_following(
    api: httpx.AsyncClient, follower: Worker, mock_upstream: tuple[str, Any]
) -> None:
    task_id = await put(api, job(IMAGINE, "callback", "http://127.0.0.1:9/cb", duration=60))
    running = await wait_view(api, task_id, lambda v: "upstream_task_id" in v)
    await eventually(lambda: running["upstream_task_id"] in read_ids(mock_upstream, MJ_READ))
    cancelled = await api.post(f"/v1/queue/{task_id}/cancel")
    assert cancelled.status_code == 200
    assert (await view(api, task_id))["status"] == "cancelled"
    await assert_no_more_reads(api, follower, mock_upstream, running["upstream_task_id"])


async def assert_no_more_reads(
    api: httpx.AsyncClient, follower: Worker, mock_upstream: tuple[str, Any], upstream_id: str
) -> None:
    """The task is read no more: the followed set is empty and, while a second job is
    followed through several reads, no read names this one's upstream task."""
    prefix = follower.ctx["settings"].key_prefix
    redis = follower.ctx["runtime"].store.following._redis
    assert await redis.zcard(Keys(prefix).followed("art")) == 0
    seen = read_ids(mock_upstream, MJ_READ).count(upstream_id)
    response = await api.post("/v1/queue/put", json=job(IMAGINE, "blocking", duration=1))
    assert response.status_code == 200
    assert len(requests_to(mock_upstream, MJ_READ)) >= 3
    assert read_ids(mock_upstream, MJ_READ).count(upstream_id) == seen


async def test_a_worker_killed_while_following_loses_nothing_and_never_submits_twice(
    api: httpx.AsyncClient,
    redis_url: str,
    prefix: str,
    mock_upstream: tuple[str, Any],
    receiver: tuple[str, CallbackReceiver],
) -> None:
    url, inbox = receiver
    env = process_env(
        redis_url,
        prefix,
        upstream_url=mock_upstream[0],
        task_poll_interval="0.1",
        task_poll_max_interval="0.3",
    )
    command = [sys.executable, "-m", "queue_service", "worker"]
    first = await asyncio.to_thread(subprocess.Popen, command, env=env, stdin=subprocess.DEVNULL)
    try:
        task_id = await put(api, job(IMAGINE, "callback", url, duration=3, steps=6))
        running = await wait_view(api, task_id, lambda v: v.get("progress") not in (None, "0%"))
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait, 10)
        upstream_id = running["upstream_task_id"]
        second = await asyncio.to_thread(
            subprocess.Popen, command, env=env, stdin=subprocess.DEVNULL
        )
        try:
            (callback,) = await inbox.wait_for(1, timeout=30)
        finally:
            second.terminate()
            await asyncio.to_thread(second.wait, 30)
    finally:
        first.kill()
    assert (callback["status"], callback["body"]["id"]) == ("succeeded", upstream_id)
    assert len(requests_to(mock_upstream, IMAGINE)) == 1


async def test_a_thousand_jobs_are_followed_with_a_handful_of_reads(
    api: httpx.AsyncClient,
    settings: Settings,
    mock_upstream: tuple[str, Any],
    receiver: tuple[str, CallbackReceiver],
) -> None:
    url, inbox = receiver
    jobs = 1000
    limit = asyncio.Semaphore(32)

    async def put_one(n: int) -> str:
        async with limit:
            return await put(api, job(IMAGINE, "callback", url, duration=2, steps=2))

    every_second = settings.model_copy(update={"task_poll_interval": 1.0})
    async with running_worker(every_second) as worker:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(put_one(n) for n in range(jobs)))
        await inbox.wait_for(jobs, timeout=120)
        elapsed = loop.time() - started
        reads = worker.ctx["runtime"].follower.reads
    assert {callback["status"] for callback in inbox.received} == {"succeeded"}
    assert len(requests_to(mock_upstream, IMAGINE)) == jobs
    read_requests = requests_to(mock_upstream, MJ_READ)
    assert len(read_requests) == reads
    # Reading each task on its own every second would take about 1,000 requests a second;
    # in batches of up to 100 it is a handful.
    assert len(read_requests) / elapsed < 20, (len(read_requests), elapsed)
    assert max(len(body["ids"]) for body in read_requests) == settings.task_poll_batch
