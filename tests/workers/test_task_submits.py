"""A task-API job's submit, run by the executor as the worker runtime builds it (real Redis,
the real mock upstream): sent again only when the upstream surely took no task, handed over
to the followers whatever stops the worker meanwhile, never submitted a second time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from arq.connections import RedisSettings, create_pool
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from queue_service.models import PutRequest, ResponseMode, Status
from queue_service.settings import Settings
from queue_service.store import Lane, StreamEntry, Submission, TaskRecord
from queue_service.store.keys import CONSUMER_GROUP
from tests.helpers import eventually
from tests.servers import TcpProxy
from tests.task_api_helpers import IMAGINE, MJ_READ, requests_to
from workers.consumer import Job
from workers.runtime import WorkerRuntime

QUEUE = "art"
MockUpstream = tuple[str, Any]


@asynccontextmanager
async def worker_runtime(settings: Settings) -> AsyncIterator[WorkerRuntime]:
    """The runtime's objects (executor, follower, store), without its background tasks."""
    arq = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    runtime = WorkerRuntime(settings, None, arq)
    try:
        yield runtime
    finally:
        await runtime.follower.settle()
        await runtime.outcomes.settle()
        await runtime.upstream_http.aclose()
        await runtime.callback_http.aclose()
        await runtime.reader.aclose()
        await runtime.store.aclose()
        await arq.aclose()


def routed(settings: Settings, tmp_path: Path, base_url: str, **route: Any) -> Settings:
    """The settings with a routing file sending imagine jobs to `base_url` (`route`: more
    keys of its `[[upstream]]`)."""
    lines = [
        "[[upstream]]",
        'name = "mj"',
        f'endpoint = "{IMAGINE}"',
        f'base_url = "{base_url}"',
        *(f"{key} = {value!r}" for key, value in route.items()),
    ]
    path = tmp_path / "upstreams.toml"
    path.write_text("\n".join(lines) + "\n")
    return settings.model_copy(update={"upstreams_file": str(path)})


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[WorkerRuntime]:
    async with worker_runtime(settings) as built:
        yield built


async def put(runtime: WorkerRuntime, **mock: Any) -> Submission:
    """A callback imagine job (level 0) with the mock controls `mock`."""
    job = PutRequest(
        queue=QUEUE,
        endpoint=IMAGINE,
        level=0,
        data={"prompt": "a cat", "mock": mock},
        response_mode=ResponseMode.CALLBACK,
        callback_url="http://127.0.0.1:9/callback",
    )
    submission = await runtime.store.tasks.prepare(job, tenant="", timeout_s=60)
    await runtime.store.tasks.submit(submission)
    return submission


async def take(runtime: WorkerRuntime) -> StreamEntry:
    (entry,) = await runtime.reader.read(Lane(QUEUE, 0), 10)
    return entry


async def load(runtime: WorkerRuntime, submission: Submission) -> TaskRecord:
    record = await runtime.store.tasks.load(QUEUE, submission.text_id)
    assert record is not None
    return record


async def stream_state(redis: Redis, runtime: WorkerRuntime) -> tuple[int, int]:
    """(entries in the stream, entries read but not acknowledged)."""
    stream = runtime.store.keys.stream(QUEUE, 0)
    pending = await redis.xpending(stream, CONSUMER_GROUP)
    return await redis.xlen(stream), pending["pending"]


async def is_followed(redis: Redis, runtime: WorkerRuntime, task_id: str) -> bool:
    return await redis.zscore(runtime.store.keys.followed(QUEUE), task_id) is not None


def submits(mock_upstream: MockUpstream) -> int:
    return len(requests_to(mock_upstream, IMAGINE))


# -- never a second submit once the upstream task id is stored ----------------------------


async def test_a_shutdown_landing_during_the_hand_over_neither_requeues_nor_resubmits(
    runtime: WorkerRuntime, redis: Redis, mock_upstream: MockUpstream
) -> None:
    """The cancel lands once follow.lua has run, while the hand-over's await has not
    returned: the job must not be handed back to the queue (it would be submitted again)."""
    submission = await put(runtime, duration=0.2)
    entry = await take(runtime)
    real = runtime.store.following.hand_over
    stored, go_on = asyncio.Event(), asyncio.Event()

    async def slow_to_return(*args: Any, **kwargs: Any) -> bool:
        followed = await real(*args, **kwargs)
        stored.set()
        await go_on.wait()
        return followed

    runtime.store.following.hand_over = slow_to_return  # type: ignore[method-assign]
    running = asyncio.create_task(runtime.executor.run(Job(entry)))
    await eventually(stored.is_set, what="the upstream task id to be stored")
    running.cancel()  # the worker shuts down
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert await stream_state(redis, runtime) == (0, 0)  # not handed back
    record = await load(runtime, submission)
    assert (record.status, bool(record.upstream_task_id)) == (Status.RUNNING, True)
    assert await is_followed(redis, runtime, submission.text_id)
    assert submits(mock_upstream) == 1


async def test_a_fresh_entry_of_a_followed_task_is_handed_over_again_not_submitted(
    runtime: WorkerRuntime, redis: Redis, mock_upstream: MockUpstream
) -> None:
    """However a followed task gets an entry again (an older worker's requeue), running it
    submits nothing: the entry is acknowledged and the following goes on to the end."""
    submission = await put(runtime, duration=0.3)
    await runtime.executor.run(Job(await take(runtime)))
    record = await load(runtime, submission)
    upstream_id = record.upstream_task_id
    assert upstream_id
    assert submits(mock_upstream) == 1
    stream = runtime.store.keys.stream(QUEUE, 0)
    await redis.xadd(stream, {"task": submission.text_id})
    await redis.hset(runtime.store.keys.task(QUEUE, submission.text_id), "status", "queued")
    await runtime.executor.run(Job(await take(runtime)))
    assert submits(mock_upstream) == 1
    assert await stream_state(redis, runtime) == (0, 0)
    again = await load(runtime, submission)
    assert (again.status, again.upstream_task_id) == (Status.RUNNING, upstream_id)
    assert await is_followed(redis, runtime, submission.text_id)

    async def succeeded() -> bool:
        await runtime.follower.look()
        await runtime.follower.settle()
        return (await load(runtime, submission)).status is Status.SUCCEEDED

    await eventually(succeeded, what="the job to succeed")
    assert submits(mock_upstream) == 1
    assert upstream_id in [
        one for body in requests_to(mock_upstream, MJ_READ) for one in body["ids"]
    ]


async def test_redis_errors_at_the_hand_over_are_tried_again(
    runtime: WorkerRuntime, redis: Redis, mock_upstream: MockUpstream
) -> None:
    submission = await put(runtime, duration=60)
    real = runtime.store.following.hand_over
    refusals = 2

    async def flaky(*args: Any, **kwargs: Any) -> bool:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise RedisConnectionError("Connection reset by peer")
        return await real(*args, **kwargs)

    runtime.store.following.hand_over = flaky  # type: ignore[method-assign]
    await runtime.executor.run(Job(await take(runtime)))
    assert refusals == 0
    assert await stream_state(redis, runtime) == (0, 0)
    assert (await load(runtime, submission)).upstream_task_id
    assert await is_followed(redis, runtime, submission.text_id)
    assert submits(mock_upstream) == 1


# -- retried only when the upstream surely took no task -----------------------------------


@pytest.mark.parametrize(
    ("controls", "sent", "followed"),
    [
        ({"status": 500}, 1, False),  # may have made a task: not sent again
        ({"status": 502}, 1, False),
        ({"status": 429, "fail_times": 1, "key": "busy"}, 2, True),  # refused for now
        ({"submit_code": 23}, 4, False),  # queue full (429): retried until given up
    ],
)
async def test_a_submit_is_retried_only_when_refused(
    runtime: WorkerRuntime,
    mock_upstream: MockUpstream,
    controls: dict[str, Any],
    sent: int,
    followed: bool,
) -> None:
    submission = await put(runtime, **controls)
    await runtime.executor.run(Job(await take(runtime)))
    assert submits(mock_upstream) == sent
    record = await load(runtime, submission)
    assert bool(record.upstream_task_id) is followed
    if not followed:
        assert record.status is Status.FAILED


async def test_a_submit_that_timed_out_is_not_sent_again(
    settings: Settings, tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    """The upstream took the task but answered too late: a retry would start a second one."""
    async with worker_runtime(routed(settings, tmp_path, mock_upstream[0], timeout=0.3)) as rt:
        submission = await put(rt, submit_delay=1)
        await rt.executor.run(Job(await take(rt)))
        record = await load(rt, submission)
    assert record.outcome is not None
    assert (record.status, record.outcome.status_code) == (Status.FAILED, 504)
    assert submits(mock_upstream) == 1
    assert len(mock_upstream[1].state.mock_mj_tasks) == 1  # the task it made, not followed


async def test_a_submit_the_upstream_cut_off_is_not_sent_again(
    settings: Settings, tmp_path: Path
) -> None:
    """The connection broke after the request went out: the upstream may have its task."""
    connections = 0

    async def read_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read(1024)
        writer.transport.abort()

    server = await asyncio.start_server(read_then_hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        tuned = routed(settings, tmp_path, f"http://127.0.0.1:{port}")
        async with worker_runtime(tuned) as rt:
            submission = await put(rt)
            await rt.executor.run(Job(await take(rt)))
            record = await load(rt, submission)
    finally:
        server.close()
        await server.wait_closed()
    assert record.outcome is not None
    assert (record.status, record.outcome.status_code) == (Status.FAILED, 502)
    assert connections == 1


async def test_a_submit_that_could_not_connect_is_sent_again(
    settings: Settings,
    tmp_path: Path,
    mock_upstream: MockUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No connection: the request never reached the upstream, so it is tried again."""
    caplog.set_level(logging.INFO, logger="workers.upstream_call")
    host, port = mock_upstream[0].removeprefix("http://").split(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    await proxy.cut()
    patient = settings.model_copy(
        update={"upstream_max_retries": 200, "upstream_retry_backoff_max": 0.1}
    )
    tuned = routed(patient, tmp_path, f"http://127.0.0.1:{proxy.port}")
    try:
        async with worker_runtime(tuned) as rt:
            submission = await put(rt, duration=60)
            running = asyncio.create_task(rt.executor.run(Job(await take(rt))))

            def retried() -> bool:
                return any("retry 1 " in record.getMessage() for record in caplog.records)

            await eventually(retried, what="a retry after the refused connection")
            await proxy.restore()
            await running
            record = await load(rt, submission)
    finally:
        await proxy.cut()
    assert record.upstream_task_id
    assert submits(mock_upstream) == 1
