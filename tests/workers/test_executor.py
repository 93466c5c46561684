"""JobExecutor as the worker runtime builds it, on the real Redis, against the real mock
upstream, with callbacks to a real receiver: one stream entry at a time, from the stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from arq.connections import RedisSettings, create_pool
from redis.asyncio import Redis

from queue_service.models import CallbackState, PutRequest, ResponseMode, Status
from queue_service.settings import Settings
from queue_service.store import Lane, StreamEntry, Submission, TaskRecord
from queue_service.store.events import Chunk, Done, Head
from queue_service.store.keys import CONSUMER_GROUP
from queue_service.timing import now_ms
from tests.helpers import eventually
from tests.servers import CallbackReceiver
from workers.consumer import Job
from workers.runtime import WorkerRuntime

from .conftest import Listen

QUEUE = "jobs"
MAX_DELIVERIES = 2
MockUpstream = tuple[str, Any]
Receiver = tuple[str, CallbackReceiver]


@asynccontextmanager
async def worker_runtime(settings: Settings, redis_url: str) -> AsyncIterator[WorkerRuntime]:
    """The runtime's objects (executor, reader, store), without its background tasks."""
    arq = await create_pool(RedisSettings.from_dsn(redis_url))
    runtime = WorkerRuntime(settings, None, arq)
    try:
        yield runtime
    finally:
        await runtime.outcomes.settle()
        await runtime.upstream_http.aclose()
        await runtime.callback_http.aclose()
        await runtime.reader.aclose()
        await runtime.store.aclose()
        await arq.aclose()


@pytest.fixture
def tuned(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    """The test settings; with a concurrency limit on the queue under `@limits_or_not`."""
    update: dict[str, Any] = {"max_deliveries": MAX_DELIVERIES, "upstream_max_retries": 0}
    if getattr(request, "param", False):
        routes = tmp_path / "upstreams.toml"
        routes.write_text(f'[[queue]]\nname = "{QUEUE}"\nmax_concurrency = 1\n')
        update["upstreams_file"] = str(routes)
    return settings.model_copy(update=update)


limits_or_not = pytest.mark.parametrize(
    "tuned", [False, True], ids=["unlimited", "limited"], indirect=True
)
"""With a limit, the executor looks at the task before it waits for a slot, and holds the
slot (a lease in Redis) while the job runs."""


@pytest.fixture
async def runtime(tuned: Settings, redis_url: str) -> AsyncIterator[WorkerRuntime]:
    async with worker_runtime(tuned, redis_url) as built:
        assert built.routing.has_limits is (tuned.upstreams_file is not None)
        yield built


async def put(
    runtime: WorkerRuntime,
    mode: ResponseMode = ResponseMode.BLOCKING,
    callback_url: str | None = None,
    **mock: Any,
) -> Submission:
    data: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    if mock:
        data["mock"] = mock
    job = PutRequest(
        queue=QUEUE,
        endpoint="/v1/chat/completions",
        level=0,
        data=data,
        response_mode=mode,
        callback_url=callback_url,
    )
    submission = await runtime.store.tasks.prepare(job, tenant="", timeout_s=30)
    await runtime.store.tasks.submit(submission)
    return submission


async def take(runtime: WorkerRuntime) -> StreamEntry:
    """The one new entry of the queue's online stream, read as the worker's consumer."""
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


async def held_slots(redis: Redis, runtime: WorkerRuntime) -> int:
    """Slots of the queue's concurrency limit held right now (leases in Redis)."""
    return int(await redis.zcard(runtime.store.keys.limit_leases(f"queue:{QUEUE}")))


def requests(mock: MockUpstream) -> list[Any]:
    recorded: list[Any] = mock[1].state.mock_requests
    return recorded


def disconnects(mock: MockUpstream) -> list[str]:
    gone: list[str] = mock[1].state.mock_disconnects
    return gone


def error_of(record: TaskRecord) -> dict[str, Any]:
    assert record.outcome is not None
    error: dict[str, Any] = orjson.loads(record.outcome.body)["error"]
    return error


async def set_deadline(redis: Redis, runtime: WorkerRuntime, task_id: str, ms: int) -> None:
    """Move a task's deadline (as if it had waited that long), instead of sleeping."""
    key = runtime.store.keys.task(QUEUE, task_id)
    await cast(Awaitable[int], redis.hset(key, "deadline", str(ms)))


async def redelivered(runtime: WorkerRuntime, times: int) -> StreamEntry:
    """The queue's entry, read once and then taken over `times` times from silent workers."""
    entry = await take(runtime)
    impatient = runtime.store.stream_reader("impatient", visibility_timeout=0.001)
    try:
        for delivery in range(2, times + 2):
            (entry,) = await eventually(lambda: impatient.reclaim(Lane(QUEUE, 0), 1))
            assert entry.deliveries == delivery
    finally:
        await impatient.aclose()
    return entry


# -- running to the end ------------------------------------------------------------------


@limits_or_not
async def test_a_job_runs_its_outcome_is_stored_and_its_entry_acked(
    runtime: WorkerRuntime, redis: Redis, mock_upstream: MockUpstream, listen: Listen
) -> None:
    submission = await put(runtime, reply="pong")
    entry = await take(runtime)
    assert entry.task_id == submission.text_id
    assert await stream_state(redis, runtime) == (1, 1)
    async with listen(submission.channel) as channel:
        await runtime.executor.run(Job(entry))
        events = await channel.events()

    record = await load(runtime, submission)
    assert record.status is Status.SUCCEEDED
    assert record.attempts == 1
    assert record.started_at is not None
    assert record.finished_at is not None
    assert record.outcome is not None
    assert record.outcome.status_code == 200
    assert orjson.loads(record.outcome.body)["choices"][0]["message"]["content"] == "pong"
    assert events == [Done(Status.SUCCEEDED, 200, "application/json", record.outcome.body)]
    assert await stream_state(redis, runtime) == (0, 0)
    (request,) = requests(mock_upstream)
    assert request.body["messages"] == [{"role": "user", "content": "hi"}]
    assert await held_slots(redis, runtime) == 0


async def test_a_streaming_job_is_relayed_and_stored_assembled(
    runtime: WorkerRuntime, redis: Redis, mock_upstream: MockUpstream, listen: Listen
) -> None:
    submission = await put(runtime, ResponseMode.STREAMING, tokens=2)
    async with listen(submission.channel) as channel:
        await runtime.executor.run(Job(await take(runtime)))
        head, *chunks, done = await channel.events()
    assert requests(mock_upstream)[0].body["stream"] is True
    assert head == Head(200, "text/event-stream; charset=utf-8")
    assert [type(chunk) for chunk in chunks] == [Chunk] * 5
    record = await load(runtime, submission)
    assert record.status is Status.SUCCEEDED
    assert record.outcome is not None
    assembled = orjson.loads(record.outcome.body)
    assert assembled["object"] == "chat.completion"
    assert assembled["choices"][0]["message"]["content"] == "tok0 tok1"
    assert done == Done(Status.SUCCEEDED, 200, "application/json", record.outcome.body)
    assert await stream_state(redis, runtime) == (0, 0)


async def test_the_callback_is_delivered_once_the_outcome_is_stored(
    runtime: WorkerRuntime, redis: Redis, receiver: Receiver
) -> None:
    url, inbox = receiver
    submission = await put(runtime, ResponseMode.CALLBACK, url, reply="pong")
    await runtime.executor.run(Job(await take(runtime)))
    # `run` returns once the callback is settled: no waiting needed.
    (callback,) = inbox.received
    assert callback["task_id"] == submission.text_id
    assert (callback["status"], callback["status_code"]) == ("succeeded", 200)
    assert callback["body"]["choices"][0]["message"]["content"] == "pong"
    assert inbox.headers[0]["idempotency-key"] == submission.text_id
    record = await load(runtime, submission)
    assert record.status is Status.SUCCEEDED
    assert (record.callback_status, record.callback_attempts) == (CallbackState.DELIVERED, 1)
    assert await redis.zcard(runtime.store.keys.callbacks_due(QUEUE)) == 0
    assert await stream_state(redis, runtime) == (0, 0)


# -- jobs that must not run --------------------------------------------------------------


async def test_a_job_past_its_deadline_ends_timeout_without_calling_the_upstream(
    runtime: WorkerRuntime, redis: Redis, mock_upstream: MockUpstream, receiver: Receiver
) -> None:
    url, inbox = receiver
    submission = await put(runtime, ResponseMode.CALLBACK, url)
    entry = await take(runtime)
    await set_deadline(redis, runtime, submission.text_id, now_ms() - 1)
    await runtime.executor.run(Job(entry))

    record = await load(runtime, submission)
    assert record.status is Status.TIMEOUT
    assert record.outcome is not None
    assert record.outcome.status_code == 408
    assert error_of(record) == {"message": "deadline passed before start", "type": "timeout"}
    assert requests(mock_upstream) == []
    assert await stream_state(redis, runtime) == (0, 0)
    (callback,) = inbox.received
    assert (callback["status"], callback["status_code"]) == ("timeout", 408)


async def test_a_job_reaching_its_deadline_while_running_ends_timeout(
    runtime: WorkerRuntime, redis: Redis, mock_upstream: MockUpstream, receiver: Receiver
) -> None:
    url, inbox = receiver
    submission = await put(runtime, ResponseMode.CALLBACK, url, hang=True)
    entry = await take(runtime)
    await set_deadline(redis, runtime, submission.text_id, now_ms() + 300)
    await runtime.executor.run(Job(entry))

    record = await load(runtime, submission)
    assert record.status is Status.TIMEOUT
    assert error_of(record) == {"message": "job timed out", "type": "timeout"}
    (request,) = requests(mock_upstream)
    await eventually(lambda: request.response_id in disconnects(mock_upstream))
    assert await stream_state(redis, runtime) == (0, 0)
    assert [c["status"] for c in inbox.received] == ["timeout"]


@pytest.mark.parametrize("mode", list(ResponseMode))
async def test_a_job_taken_over_after_its_deadline_ends_timeout_without_calling_the_upstream(
    runtime: WorkerRuntime,
    redis: Redis,
    mock_upstream: MockUpstream,
    receiver: Receiver,
    mode: ResponseMode,
) -> None:
    url, _ = receiver
    submission = await put(runtime, mode, url if mode is ResponseMode.CALLBACK else None)
    # A worker started it and died; its deadline passed before another one took it over.
    await runtime.store.tasks.start(QUEUE, submission.text_id, "lost-worker")
    await set_deadline(redis, runtime, submission.text_id, now_ms() - 500)
    entry = await redelivered(runtime, times=1)
    await runtime.executor.run(Job(entry))

    record = await load(runtime, submission)
    assert requests(mock_upstream) == []
    assert record.status is Status.TIMEOUT
    assert record.outcome is not None
    assert record.outcome.status_code == 408
    assert await stream_state(redis, runtime) == (0, 0)


@limits_or_not
@pytest.mark.parametrize("ended", ["cancelled", "expired"])
async def test_a_task_cancelled_or_gone_before_it_starts_is_acked_without_calling_the_upstream(
    runtime: WorkerRuntime, redis: Redis, mock_upstream: MockUpstream, ended: str
) -> None:
    submission = await put(runtime)
    entry = await take(runtime)
    if ended == "cancelled":
        assert await runtime.store.tasks.cancel(submission.text_id, tenant="") is not None
    else:  # its record expired (retention) while the entry waited
        await redis.delete(runtime.store.keys.task(QUEUE, submission.text_id))
    assert (await stream_state(redis, runtime))[1] == 1  # read, not acknowledged
    await runtime.executor.run(Job(entry))

    assert requests(mock_upstream) == []
    assert (await stream_state(redis, runtime))[1] == 0
    record = await runtime.store.tasks.load(QUEUE, submission.text_id)
    if ended == "cancelled":
        assert record is not None
        assert (record.status, record.attempts) == (Status.CANCELLED, 0)
    else:
        assert record is None


@limits_or_not
async def test_a_task_already_finished_is_not_run_again(
    runtime: WorkerRuntime, redis: Redis, mock_upstream: MockUpstream
) -> None:
    submission = await put(runtime)
    entry = await take(runtime)
    await runtime.executor.run(Job(entry))
    finished = await load(runtime, submission)
    assert finished.status is Status.SUCCEEDED

    await runtime.executor.run(Job(entry))  # delivered again (a duplicate)
    assert len(requests(mock_upstream)) == 1
    assert await load(runtime, submission) == finished
    assert await stream_state(redis, runtime) == (0, 0)


# -- lost workers -------------------------------------------------------------------------


async def test_an_entry_delivered_too_often_ends_failed(
    runtime: WorkerRuntime, redis: Redis, mock_upstream: MockUpstream, receiver: Receiver
) -> None:
    url, inbox = receiver
    submission = await put(runtime, ResponseMode.CALLBACK, url)
    entry = await redelivered(runtime, times=MAX_DELIVERIES)
    assert entry.deliveries == MAX_DELIVERIES + 1
    await runtime.executor.run(Job(entry))

    record = await load(runtime, submission)
    assert record.status is Status.FAILED
    assert record.outcome is not None
    assert record.outcome.status_code == 500
    assert error_of(record) == {"message": "worker lost 2 times", "type": "worker_lost"}
    assert requests(mock_upstream) == []
    assert await stream_state(redis, runtime) == (0, 0)
    (callback,) = inbox.received
    assert (callback["status"], callback["status_code"]) == ("failed", 500)


async def test_an_entry_delivered_as_often_as_allowed_still_runs(
    runtime: WorkerRuntime, redis: Redis, mock_upstream: MockUpstream
) -> None:
    submission = await put(runtime)
    entry = await redelivered(runtime, times=MAX_DELIVERIES - 1)
    assert entry.deliveries == MAX_DELIVERIES
    await runtime.executor.run(Job(entry))
    assert (await load(runtime, submission)).status is Status.SUCCEEDED
    assert len(requests(mock_upstream)) == 1
    assert await stream_state(redis, runtime) == (0, 0)


async def test_giving_up_on_a_finished_task_only_acks_it(
    runtime: WorkerRuntime, redis: Redis, mock_upstream: MockUpstream
) -> None:
    submission = await put(runtime)
    entry = await redelivered(runtime, times=MAX_DELIVERIES)
    await runtime.store.tasks.cancel(submission.text_id, tenant="")
    await runtime.executor.run(Job(entry))
    assert (await load(runtime, submission)).status is Status.CANCELLED
    assert await stream_state(redis, runtime) == (0, 0)
    assert requests(mock_upstream) == []


# -- stopped while running ------------------------------------------------------------------


async def started(
    runtime: WorkerRuntime, mock: MockUpstream, job: Job
) -> tuple[asyncio.Task[None], str]:
    """The job running, its upstream request under way; and that request's response id."""
    running = asyncio.create_task(runtime.executor.run(job))
    (request,) = await eventually(lambda: requests(mock))
    return running, request.response_id


@limits_or_not
async def test_a_job_cancelled_by_its_client_is_acked_not_requeued(
    runtime: WorkerRuntime, redis: Redis, mock_upstream: MockUpstream
) -> None:
    submission = await put(runtime, hang=True)
    job = Job(await take(runtime))
    running, response_id = await started(runtime, mock_upstream, job)
    assert await held_slots(redis, runtime) == int(runtime.routing.has_limits)

    # What the API and the consumer do: cancel the task, then stop its job.
    await runtime.store.tasks.cancel(submission.text_id, tenant="")
    job.cancel_requested = True
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    assert await stream_state(redis, runtime) == (0, 0)  # acked, nothing put back
    assert (await load(runtime, submission)).status is Status.CANCELLED
    assert await held_slots(redis, runtime) == 0
    await eventually(lambda: response_id in disconnects(mock_upstream))


@limits_or_not
@pytest.mark.parametrize("mode", [ResponseMode.CALLBACK, ResponseMode.BLOCKING])
async def test_a_shutdown_hands_a_callback_or_blocking_job_back_to_its_queue(
    runtime: WorkerRuntime,
    redis: Redis,
    mock_upstream: MockUpstream,
    receiver: Receiver,
    mode: ResponseMode,
) -> None:
    url, inbox = receiver
    callback_url = url if mode is ResponseMode.CALLBACK else None
    submission = await put(runtime, mode, callback_url, hang=True)
    entry = await take(runtime)
    running, response_id = await started(runtime, mock_upstream, Job(entry))
    assert await held_slots(redis, runtime) == int(runtime.routing.has_limits)

    running.cancel()  # what a shutdown past its grace does
    with pytest.raises(asyncio.CancelledError):
        await running

    record = await load(runtime, submission)
    assert record.status is Status.QUEUED
    assert record.outcome is None
    assert record.entry != entry.entry_id
    assert await stream_state(redis, runtime) == (1, 0)  # a fresh entry, not yet read
    again = await take(runtime)
    assert (again.entry_id, again.task_id, again.deliveries) == (
        record.entry,
        submission.text_id,
        1,
    )
    assert inbox.received == []
    assert await held_slots(redis, runtime) == 0
    await eventually(lambda: response_id in disconnects(mock_upstream))


async def test_a_shutdown_fails_a_streaming_job_in_the_middle_of_its_stream(
    runtime: WorkerRuntime, redis: Redis, mock_upstream: MockUpstream, listen: Listen
) -> None:
    submission = await put(runtime, ResponseMode.STREAMING, tokens=200, token_latency=0.02)
    async with listen(submission.channel) as channel:
        running, response_id = await started(runtime, mock_upstream, Job(await take(runtime)))

        async def some_relayed() -> bool:
            return sum(isinstance(event, Chunk) for event in await channel.poll()) >= 3

        await eventually(some_relayed)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        events = await channel.events()

    record = await load(runtime, submission)
    assert record.status is Status.FAILED
    assert record.outcome is not None
    assert record.outcome.status_code == 503
    assert error_of(record) == {
        "message": "the worker shut down in the middle of the stream",
        "type": "worker_shutdown",
    }
    assert isinstance(events[0], Head)
    assert events[-1] == Done(Status.FAILED, 503, "application/json", record.outcome.body)
    assert await stream_state(redis, runtime) == (0, 0)  # not requeued: it would repeat
    await eventually(lambda: response_id in disconnects(mock_upstream))
