"""The Python client (sync and async) against a live API, worker and mock upstream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from arq.worker import Worker

from queue_service.api.app import create_app
from queue_service.client import (
    AsyncQueueClient,
    BadRequest,
    Conflict,
    ConnectionFailed,
    NotFound,
    QueueClient,
    QueueClientError,
    QueueFull,
    RequestTimeout,
    ServiceUnavailable,
    StreamError,
    StreamEvent,
    Unauthorized,
    UpstreamError,
    WaitTimeout,
)
from queue_service.dev.embedded_redis import free_port
from queue_service.settings import Settings
from tests.servers import CallbackReceiver, TcpProxy, serve

CHAT = "/v1/chat/completions"


def chat(text: str = "hello", **mock: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": text}]}
    if mock:
        data["mock"] = mock
    return data


@pytest.fixture
async def client(api: httpx.AsyncClient) -> AsyncIterator[AsyncQueueClient]:
    async with AsyncQueueClient(str(api.base_url)) as queue_client:
        yield queue_client


@contextlib.asynccontextmanager
async def service(settings: Settings) -> AsyncIterator[AsyncQueueClient]:
    """An API with these settings, and an async client for it."""
    async with serve(create_app(settings)) as url, AsyncQueueClient(url) as queue_client:
        yield queue_client


async def collect(events: AsyncIterator[StreamEvent], into: list[StreamEvent]) -> None:
    async for event in events:
        into.append(event)


def content_of(events: list[StreamEvent]) -> str:
    """The streamed reply's text."""
    choices = [choice for event in events for choice in event.data["choices"]]
    return "".join(choice["delta"].get("content") or "" for choice in choices)


def without_ids(event: StreamEvent) -> Any:
    chunk = dict(event.data)
    chunk.pop("id", None)
    chunk.pop("created", None)
    return chunk


async def test_put_then_wait_returns_the_finished_task(
    client: AsyncQueueClient, worker: Worker, receiver: tuple[str, CallbackReceiver]
) -> None:
    task_id = await client.put("client", CHAT, chat("ping"), callback_url=receiver[0])
    assert task_id.startswith("TASK-")
    assert "-1-C-" in task_id
    view = await client.wait(task_id, poll=0.05, timeout=10)
    assert (view["status"], view["status_code"]) == ("succeeded", 200)
    assert "ping" in view["result"]["choices"][0]["message"]["content"]
    assert (await client.get(task_id))["task_id"] == task_id
    (delivered,) = await receiver[1].wait_for(1)
    assert delivered["task_id"] == task_id


async def test_blocking_answers_the_upstream_body_status_and_task_id(
    client: AsyncQueueClient, worker: Worker
) -> None:
    response = await client.blocking("client", CHAT, chat("are you there"))
    assert response.status_code == 200
    assert response.body["object"] == "chat.completion"
    assert "are you there" in response.body["choices"][0]["message"]["content"]
    assert "-0-B-" in response.task_id
    assert (await client.get(response.task_id))["status"] == "succeeded"


async def test_blocking_raises_upstream_error_with_its_status_and_body(
    client: AsyncQueueClient, worker: Worker
) -> None:
    with pytest.raises(UpstreamError) as caught:
        await client.blocking("client", CHAT, chat(status=429))
    assert caught.value.status_code == 429
    assert "error" in caught.value.body
    assert caught.value.task_id is not None
    view = await client.get(caught.value.task_id)
    assert (view["status"], view["status_code"]) == ("failed", 429)


async def test_stream_yields_the_upstream_events_in_order_and_stops_at_done(
    client: AsyncQueueClient, worker: Worker, mock_upstream: tuple[str, Any]
) -> None:
    data = chat("tell me") | {"stream_options": {"include_usage": True}}
    events = [event async for event in client.stream("client", CHAT, data)]

    async with httpx.AsyncClient() as direct:
        request = data | {"stream": True}
        answer = await direct.post(f"{mock_upstream[0]}{CHAT}", json=request)
    lines = [line for line in answer.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    expected = [StreamEvent(None, orjson.loads(line[6:])) for line in lines[:-1]]

    assert [event.event for event in events] == [None] * len(events)
    assert [without_ids(e) for e in events] == [without_ids(e) for e in expected]
    assert "tell me" in content_of(events)
    assert events[-1].data["usage"]


async def test_an_error_event_raises_stream_error_after_the_events_before_it(
    client: AsyncQueueClient, worker: Worker
) -> None:
    received: list[StreamEvent] = []
    with pytest.raises(StreamError) as caught:
        await collect(client.stream("client", CHAT, chat(break_after=3)), received)
    assert len(received) == 3
    assert "upstream request failed" in caught.value.message
    assert caught.value.kind == "failed"
    assert caught.value.task_id is not None
    assert "-0-S-" in caught.value.task_id


async def test_a_stream_refused_upstream_raises_upstream_error(
    client: AsyncQueueClient, worker: Worker
) -> None:
    with pytest.raises(UpstreamError) as caught:
        await collect(client.stream("client", CHAT, chat(status=503)), [])
    assert caught.value.status_code == 503


async def test_cancel_answers_the_cancelled_task_then_conflict(client: AsyncQueueClient) -> None:
    task_id = await client.put("client", CHAT, chat(), callback_url="http://127.0.0.1:9/cb")
    assert (await client.cancel(task_id))["status"] == "cancelled"
    with pytest.raises(Conflict) as caught:
        await client.cancel(task_id)
    assert caught.value.status_code == 409
    assert "already finished" in caught.value.message


async def test_unknown_task_is_not_found(client: AsyncQueueClient) -> None:
    with pytest.raises(NotFound) as caught:
        await client.get("TASK-1-1-C-260101000000-0001-000001")
    assert caught.value.status_code == 404


async def test_invalid_input_is_bad_request_with_the_service_message(
    client: AsyncQueueClient,
) -> None:
    with pytest.raises(BadRequest, match="level must be 0"):
        await client.put("client", CHAT, chat(), level=2, callback_url="http://127.0.0.1:9/cb")
    with pytest.raises(BadRequest, match="callback_url is required"):
        await client.put("client", CHAT, chat())


async def test_blocking_past_its_timeout_is_request_timeout_with_the_task_id(
    client: AsyncQueueClient, worker: Worker
) -> None:
    with pytest.raises(RequestTimeout) as caught:
        await client.blocking("client", CHAT, chat(hang=True), timeout=1)
    assert caught.value.status_code == 408
    assert caught.value.task_id is not None
    assert (await client.get(caught.value.task_id))["status"] == "timeout"


async def test_wait_gives_up_with_wait_timeout(client: AsyncQueueClient) -> None:
    task_id = await client.put("client", CHAT, chat(), callback_url="http://127.0.0.1:9/cb")
    with pytest.raises(WaitTimeout) as caught:  # no worker: it stays queued
        await client.wait(task_id, poll=0.05, timeout=0.3)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.task_id == task_id


async def test_api_key_is_sent_as_bearer_and_a_missing_one_is_unauthorized(
    settings: Settings,
) -> None:
    keyed = Settings(**{**settings.model_dump(), "api_keys": "secret"})
    async with serve(create_app(keyed)) as url:
        async with AsyncQueueClient(url) as anonymous:
            with pytest.raises(Unauthorized):
                await anonymous.get("TASK-1-1-C-260101000000-0001-000001")
        async with AsyncQueueClient(url, api_key="secret") as authorised:
            with pytest.raises(NotFound):
                await authorised.get("TASK-1-1-C-260101000000-0001-000001")


async def test_a_full_queue_is_queue_full_with_retry_after(settings: Settings) -> None:
    async with service(settings.model_copy(update={"max_waiting": 1})) as full:
        await full.put("client", CHAT, chat(), callback_url="http://127.0.0.1:9/cb")
        with pytest.raises(QueueFull) as caught:
            await full.put("client", CHAT, chat(), callback_url="http://127.0.0.1:9/cb")
    assert caught.value.status_code == 429
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 0


async def test_redis_away_is_service_unavailable(settings: Settings, redis_url: str) -> None:
    parts = urlsplit(redis_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    await proxy.start()
    proxied = f"redis://127.0.0.1:{proxy.port}{parts.path or '/0'}"
    try:
        async with service(settings.model_copy(update={"redis_url": proxied})) as cut_off:
            await proxy.cut()
            with pytest.raises(ServiceUnavailable) as caught:
                await cut_off.get("TASK-1-1-C-260101000000-0001-000001")
    finally:
        await proxy.cut()
    assert caught.value.status_code == 503


async def test_nothing_listening_is_connection_failed() -> None:
    async with AsyncQueueClient(f"http://127.0.0.1:{free_port()}") as nowhere:
        with pytest.raises(ConnectionFailed):
            await nowhere.get("TASK-1-1-C-260101000000-0001-000001")


async def test_the_sync_client_does_the_same(
    api: httpx.AsyncClient, worker: Worker, receiver: tuple[str, CallbackReceiver]
) -> None:
    def session() -> tuple[dict[str, Any], int, list[StreamEvent], QueueClientError]:
        with QueueClient(str(api.base_url)) as sync:
            task_id = sync.put("sync", CHAT, chat("one"), callback_url=receiver[0])
            view = sync.wait(task_id, poll=0.05, timeout=10)
            blocked = sync.blocking("sync", CHAT, chat("two"))
            events = list(sync.stream("sync", CHAT, chat("three")))
            try:
                sync.cancel(task_id)
            except QueueClientError as exc:
                return view, blocked.status_code, events, exc
            raise AssertionError("cancelling a finished task must fail")

    view, status_code, events, error = await asyncio.to_thread(session)
    assert view["status"] == "succeeded"
    assert "one" in view["result"]["choices"][0]["message"]["content"]
    assert status_code == 200
    assert events
    assert "three" in content_of(events)
    assert isinstance(error, Conflict)
