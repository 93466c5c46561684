"""The follower of upstream tasks in a running worker (real Redis, the real mock upstream,
callbacks to real receivers): one task's trouble stays its own, reads keep to their route,
lost and unreadable tasks end, deadlines are seen on time, and a stopping worker's claims
pass at once to the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.worker import Worker
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from queue_service.settings import Settings
from queue_service.store.following import READ_ERROR_FIELD
from queue_service.store.keys import Keys
from queue_service.timing import now_ms
from tests.conftest import running_worker
from tests.helpers import eventually, put, view, wait_view
from tests.servers import CallbackReceiver, serve
from tests.task_api_helpers import IMAGINE, MJ_READ, job, read_ids
from workers import follower as follower_module
from workers import task_reads
from workers.routing import Limit

MockUpstream = tuple[str, Any]
Receiver = tuple[str, CallbackReceiver]


@pytest.fixture
def quick(settings: Settings) -> Settings:
    """Reads a followed task every 0.1 s after a change, at most every 0.5 s."""
    return settings.model_copy(update={"task_poll_interval": 0.1, "task_poll_max_interval": 0.5})


@pytest.fixture
async def worker(quick: Settings) -> AsyncIterator[Worker]:
    async with running_worker(quick) as running:
        yield running


def with_routes(settings: Settings, tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "upstreams.toml"
    path.write_text(text)
    return settings.model_copy(update={"upstreams_file": str(path)})


async def followed_view(api: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """The task's view once its upstream task is followed."""
    return await wait_view(api, task_id, lambda v: "upstream_task_id" in v)


def by_task(callbacks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {callback["task_id"]: callback for callback in callbacks}


async def test_tasks_of_two_routes_are_read_apart_and_without_the_queues_limit(
    api: httpx.AsyncClient,
    quick: Settings,
    tmp_path: Path,
    mock_upstream: MockUpstream,
    receiver: Receiver,
) -> None:
    """Two routes of one API (two keys on one upstream): each route's tasks are read with
    its own key, and a read holds no slot of its queue's limit (the test holds that one)."""
    routes = "".join(
        f'[[upstream]]\nname = "mj-{queue}"\nendpoint = "{IMAGINE}"\nqueue = "{queue}"\n'
        f'base_url = "{mock_upstream[0]}"\napi_key = "key-{queue}"\nmax_concurrency = 4\n\n'
        for queue in ("art", "art2")
    )
    routes += '[[queue]]\nname = "art"\nmax_concurrency = 1\n'
    url, inbox = receiver
    async with running_worker(with_routes(quick, tmp_path, routes)) as worker:
        tasks = {
            queue: await put(api, job(IMAGINE, "callback", url, queue=queue, duration=1))
            for queue in ("art", "art2")
        }
        upstream = {q: (await followed_view(api, t))["upstream_task_id"] for q, t in tasks.items()}
        limiter = worker.ctx["runtime"].limiter
        async with limiter.hold((Limit("queue:art", 1),), "the test", 0, now_ms()):
            callbacks = by_task(await inbox.wait_for(2, timeout=10))
    assert {callbacks[task]["status"] for task in tasks.values()} == {"succeeded"}
    reads = [r for r in mock_upstream[1].state.mock_requests if r.path == MJ_READ]
    for queue in ("art", "art2"):
        mine = [r.body["ids"] for r in reads if r.headers["authorization"] == f"Bearer key-{queue}"]
        assert mine
        assert {one for ids in mine for one in ids} == {upstream[queue]}


@pytest.mark.parametrize(
    ("field", "value"), [("endpoint", "/v1/chat/completions"), ("data", "{not json")]
)
async def test_a_task_that_cannot_be_followed_fails_alone(
    api: httpx.AsyncClient,
    worker: Worker,
    redis: Redis,
    prefix: str,
    receiver: Receiver,
    field: str,
    value: str,
) -> None:
    url, inbox = receiver
    broken = await put(api, job(IMAGINE, "callback", url, duration=60))
    await followed_view(api, broken)
    await redis.hset(Keys(prefix).task("art", broken), field, value)
    healthy = await put(api, job(IMAGINE, "callback", url, duration=0.5))
    callbacks = by_task(await inbox.wait_for(2))
    assert (callbacks[healthy]["status"], callbacks[healthy]["status_code"]) == ("succeeded", 200)
    failed = callbacks[broken]
    assert (failed["status"], failed["status_code"]) == ("failed", 500)
    assert failed["body"]["error"]["type"] == "internal"
    assert await redis.zcard(Keys(prefix).followed("art")) == 0


async def test_a_task_the_upstream_forgot_fails_after_some_misses(
    api: httpx.AsyncClient,
    worker: Worker,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(follower_module, "MAX_MISSES", 3)
    url, inbox = receiver
    task_id = await put(api, job(IMAGINE, "callback", url, duration=60, forget_after=0.3))
    (callback,) = await inbox.wait_for(1)
    assert (callback["task_id"], callback["status"], callback["status_code"]) == (
        task_id,
        "failed",
        502,
    )
    message = callback["body"]["error"]["message"]
    assert "no longer knows task" in message
    assert "3 reads in a row" in message


async def test_a_task_that_cannot_be_read_times_out_saying_why(
    api: httpx.AsyncClient, worker: Worker, mock_upstream: MockUpstream, receiver: Receiver
) -> None:
    url, inbox = receiver
    await put(api, job(IMAGINE, "callback", url, timeout=2, duration=60, read_status=503))
    (callback,) = await inbox.wait_for(1)
    assert (callback["status"], callback["status_code"]) == ("timeout", 408)
    message = callback["body"]["error"]["message"]
    assert "could not be read (last read: /mj/task/list-by-condition answered 503" in message
    assert "the upstream has no cancel" in message
    assert len(read_ids(mock_upstream, MJ_READ)) >= 2  # read again and again, to the end


async def test_failed_reads_are_read_again(
    api: httpx.AsyncClient, worker: Worker, redis: Redis, prefix: str, receiver: Receiver
) -> None:
    url, inbox = receiver
    body = job(IMAGINE, "callback", url, duration=0.5, read_status=502, read_fail_times=2)
    task_id = await put(api, body)
    (callback,) = await inbox.wait_for(1)
    assert callback["status"] == "succeeded"
    assert await redis.hget(Keys(prefix).task("art", task_id), READ_ERROR_FIELD) == b""


@pytest.mark.parametrize(
    ("end", "status", "code"), [("MODAL", "succeeded", 200), ("CANCEL", "failed", 502)]
)
async def test_midjourney_modal_and_cancel_end_the_job(
    api: httpx.AsyncClient, worker: Worker, receiver: Receiver, end: str, status: str, code: int
) -> None:
    """MODAL waits for the client's `/mj/submit/modal`: the job ends with the task object the
    client needs for it. CANCEL: the upstream cancelled the task."""
    url, inbox = receiver
    await put(api, job(IMAGINE, "callback", url, duration=0.3, end_status=end))
    (callback,) = await inbox.wait_for(1)
    assert (callback["status"], callback["status_code"]) == (status, code)
    assert callback["body"]["status"] == end


async def test_a_deadline_is_seen_on_time_however_rarely_a_task_is_read(
    api: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    url, inbox = receiver
    rarely = settings.model_copy(update={"task_poll_interval": 20, "task_poll_max_interval": 60})
    async with running_worker(rarely):
        await put(api, job(IMAGINE, "callback", url, timeout=1, duration=60))
        (callback,) = await inbox.wait_for(1, timeout=5)
    assert callback["status"] == "timeout"


async def test_a_slow_callback_receiver_does_not_hold_up_other_tasks(
    api: httpx.AsyncClient, quick: Settings, receiver: Receiver
) -> None:
    url, inbox = receiver
    answer = asyncio.Event()

    async def hanging(request: Request) -> Response:
        await answer.wait()
        return JSONResponse({"ok": True})

    slow = Starlette(routes=[Route("/callback", hanging, methods=["POST"])])
    patient = quick.model_copy(update={"callback_request_timeout": 30})
    async with serve(slow) as slow_url, running_worker(patient):
        try:
            await put(api, job(IMAGINE, "callback", f"{slow_url}/callback", duration=0.2))
            task_id = await put(api, job(IMAGINE, "callback", url, duration=1))
            (callback,) = await inbox.wait_for(1, timeout=6)
            assert (callback["task_id"], callback["status"]) == (task_id, "succeeded")
        finally:
            answer.set()


async def test_a_read_waits_for_its_routes_limit_no_longer_than_the_read_timeout(
    api: httpx.AsyncClient,
    quick: Settings,
    tmp_path: Path,
    mock_upstream: MockUpstream,
    redis: Redis,
    prefix: str,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(task_reads, "READ_TIMEOUT", 0.3)
    routes = (
        f'[[upstream]]\nname = "mj"\nendpoint = "{IMAGINE}"\nbase_url = "{mock_upstream[0]}"\n'
        "max_concurrency = 1\n"
    )
    url, inbox = receiver
    async with running_worker(with_routes(quick, tmp_path, routes)) as worker:
        task_id = await put(api, job(IMAGINE, "callback", url, duration=1))
        await followed_view(api, task_id)
        key = Keys(prefix).task("art", task_id)

        async def read_error() -> bytes | None:
            return await redis.hget(key, READ_ERROR_FIELD)

        limiter = worker.ctx["runtime"].limiter
        async with limiter.hold((Limit("upstream:mj", 1),), "the test", 0, now_ms()):
            error = await eventually(read_error, what="a read to give up waiting")
        assert b"no answer within 0.3 s" in error
        (callback,) = await inbox.wait_for(1)
    assert callback["status"] == "succeeded"


async def test_a_stopping_worker_hands_its_claims_to_the_others_at_once(
    api: httpx.AsyncClient,
    quick: Settings,
    mock_upstream: MockUpstream,
    redis: Redis,
    prefix: str,
    receiver: Receiver,
) -> None:
    """Stopped in the middle of a (slow) read, a worker gives its claimed tasks up: they are
    due at once, not when the claim's lease would end, and another worker ends the job."""
    url, inbox = receiver
    async with running_worker(quick):
        task_id = await put(api, job(IMAGINE, "callback", url, duration=0.5, read_delay=1))
        upstream_id = (await followed_view(api, task_id))["upstream_task_id"]
        await eventually(lambda: upstream_id in read_ids(mock_upstream, MJ_READ))
    score = await redis.zscore(Keys(prefix).followed("art"), task_id)
    assert score is not None
    assert score <= now_ms()  # released: due now
    async with running_worker(quick):
        (callback,) = await inbox.wait_for(1, timeout=10)
    assert (callback["task_id"], callback["status"]) == (task_id, "succeeded")
    assert (await view(api, task_id))["status"] == "succeeded"
