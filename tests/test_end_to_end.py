"""put -> level stream -> worker -> mock upstream -> result -> callback, over real sockets."""

from __future__ import annotations

import time
from typing import Any

import httpx
from arq.worker import Worker

from queue_service.settings import Settings
from tests.helpers import callback_settled, eventually, put, put_body, view, wait_view
from tests.servers import CallbackReceiver

from .conftest import running_worker


def chat_job(callback_url: str, level: int, text: str, **mock: Any) -> dict[str, Any]:
    return put_body(
        "e2e",
        callback_url,
        level=level,
        text=text,
        model="deepseek-r1",
        stream=False,
        mock=mock or None,
    )


async def wait_status(api: httpx.AsyncClient, task_id: str, *statuses: str) -> dict[str, Any]:
    return await wait_view(api, task_id, lambda view: view["status"] in statuses)


async def test_callback_jobs_on_both_levels_reach_the_receiver_with_the_upstream_body(
    api: httpx.AsyncClient,
    worker: Worker,
    receiver: tuple[str, CallbackReceiver],
    mock_upstream: tuple[str, Any],
) -> None:
    url, inbox = receiver
    online = await put(api, chat_job(url, 0, "hello online"))
    offline = await put(api, chat_job(url, 1, "hello offline"))

    callbacks = {c["task_id"]: c for c in await inbox.wait_for(2)}
    assert set(callbacks) == {online, offline}
    for task_id, text in [(online, "hello online"), (offline, "hello offline")]:
        callback = callbacks[task_id]
        assert callback["request_id"] == task_id
        assert callback["status"] == "succeeded"
        assert callback["status_code"] == 200
        body = callback["body"]
        assert body["object"] == "chat.completion"
        assert text in body["choices"][0]["message"]["content"]
        assert body["choices"][0]["message"]["reasoning_content"]
        assert body["usage"]["total_tokens"] > 0

        view = await wait_view(api, task_id, callback_settled)
        assert view["status"] == "succeeded"
        assert view["result"] == body
        assert view["status_code"] == 200
        assert view["attempts"] == 1
        assert view["created_at"] <= view["started_at"] <= view["finished_at"]
        assert view["callback"]["status"] == "delivered"
    assert all(h["idempotency-key"] in callbacks for h in inbox.headers)
    seen = [r.body["messages"][0]["content"] for r in mock_upstream[1].state.mock_requests]
    assert sorted(seen) == ["hello offline", "hello online"]


async def test_an_upstream_error_is_a_failed_outcome_with_its_status_and_body(
    api: httpx.AsyncClient, worker: Worker, receiver: tuple[str, CallbackReceiver]
) -> None:
    url, inbox = receiver
    task_id = await put(api, chat_job(url, 1, "x", status=422))
    (callback,) = await inbox.wait_for(1)
    assert callback["task_id"] == task_id
    assert callback["status"] == "failed"
    assert callback["status_code"] == 422
    assert "error" in callback["body"]
    view = await wait_status(api, task_id, "failed")
    assert view["result"] == callback["body"]


async def test_an_unreachable_upstream_is_a_502_failure(
    api: httpx.AsyncClient, settings: Settings, receiver: tuple[str, CallbackReceiver]
) -> None:
    url, inbox = receiver
    nowhere = settings.model_copy(update={"upstream_url": "http://127.0.0.1:9"})
    async with running_worker(nowhere):
        task_id = await put(api, chat_job(url, 0, "x"))
        (callback,) = await inbox.wait_for(1)
    assert callback["task_id"] == task_id
    assert callback["status_code"] == 502
    assert "upstream request failed" in callback["body"]["error"]["message"]


async def test_a_failing_receiver_gets_the_callback_again_with_backoff(
    api: httpx.AsyncClient, worker: Worker, receiver: tuple[str, CallbackReceiver]
) -> None:
    url, inbox = receiver
    inbox.fail_first = 2
    task_id = await put(api, chat_job(url, 1, "retry me"))
    (callback,) = await inbox.wait_for(1, timeout=15)
    assert callback["task_id"] == task_id
    assert inbox.attempts == 3
    view = await wait_view(api, task_id, callback_settled)
    assert view["callback"] == {
        "url": url,
        "status": "delivered",
        "attempts": 3,
        "last_error": None,
    }


async def test_a_refused_callback_is_retried_then_given_up(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    few = settings.model_copy(update={"callback_max_attempts": 2})
    async with running_worker(few):
        task_id = await put(api, chat_job("http://127.0.0.1:9/nobody", 1, "x"))
        view = await wait_view(api, task_id, callback_settled)
    assert view["status"] == "succeeded"
    assert view["callback"]["status"] == "failed"
    assert view["callback"]["attempts"] == 2
    assert "ConnectError" in view["callback"]["last_error"]


async def test_get_of_an_unknown_task_is_404(api: httpx.AsyncClient) -> None:
    for task_id in ["TASK-999-0-C-260101000000-0001-000001", "nonsense"]:
        response = await api.get(f"/v1/queue/{task_id}")
        assert response.status_code == 404
        assert task_id in response.json()["message"]


async def test_a_cancelled_queued_job_never_runs(
    api: httpx.AsyncClient,
    settings: Settings,
    receiver: tuple[str, CallbackReceiver],
    mock_upstream: tuple[str, Any],
) -> None:
    url, inbox = receiver
    task_id = await put(api, chat_job(url, 1, "never"))
    response = await api.post(f"/v1/queue/{task_id}/cancel")
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "cancelled"
    async with running_worker(settings):
        marker = await put(api, chat_job(url, 1, "after"))
        (callback,) = await inbox.wait_for(1)
    assert callback["task_id"] == marker
    assert [r.body["messages"][0]["content"] for r in mock_upstream[1].state.mock_requests] == [
        "after"
    ]
    again = await api.post(f"/v1/queue/{task_id}/cancel")
    assert again.status_code == 409
    assert "already finished: cancelled" in again.json()["message"]


async def test_cancelling_a_running_job_stops_it(
    api: httpx.AsyncClient,
    worker: Worker,
    receiver: tuple[str, CallbackReceiver],
    mock_upstream: tuple[str, Any],
) -> None:
    url, inbox = receiver
    task_id = await put(api, chat_job(url, 0, "hang", hang=True))
    await wait_status(api, task_id, "running")
    response = await api.post(f"/v1/queue/{task_id}/cancel")
    assert response.status_code == 200
    state = mock_upstream[1].state
    await eventually(lambda: state.mock_disconnects, timeout=5)
    view = await wait_status(api, task_id, "cancelled")
    assert view["status_code"] == 499
    runtime = worker.ctx["runtime"]
    await eventually(lambda: not runtime.consumer.in_flight, timeout=5)
    assert inbox.received == []


async def test_finished_jobs_cannot_be_cancelled(
    api: httpx.AsyncClient, worker: Worker, receiver: tuple[str, CallbackReceiver]
) -> None:
    url, inbox = receiver
    task_id = await put(api, chat_job(url, 0, "quick"))
    await inbox.wait_for(1)
    response = await api.post(f"/v1/queue/{task_id}/cancel")
    assert response.status_code == 409
    view = await wait_status(api, task_id, "succeeded")
    assert view["status"] == "succeeded"


async def test_a_job_past_its_deadline_is_not_started(
    api: httpx.AsyncClient,
    settings: Settings,
    receiver: tuple[str, CallbackReceiver],
    mock_upstream: tuple[str, Any],
) -> None:
    url, inbox = receiver
    task_id = await put(api, {**chat_job(url, 1, "late"), "timeout": 1})
    deadline_ms = (await view(api, task_id))["deadline"]
    await eventually(lambda: time.time() * 1000 > deadline_ms, timeout=5)  # before any worker
    async with running_worker(settings):
        (callback,) = await inbox.wait_for(1)
    assert callback["task_id"] == task_id
    assert (callback["status"], callback["status_code"]) == ("timeout", 408)
    assert mock_upstream[1].state.mock_requests == []


async def test_a_job_running_past_its_deadline_ends_timeout(
    api: httpx.AsyncClient,
    worker: Worker,
    receiver: tuple[str, CallbackReceiver],
    mock_upstream: tuple[str, Any],
) -> None:
    url, inbox = receiver
    task_id = await put(api, {**chat_job(url, 0, "slow", hang=True), "timeout": 1})
    (callback,) = await inbox.wait_for(1, timeout=5)
    assert (callback["task_id"], callback["status"], callback["status_code"]) == (
        task_id,
        "timeout",
        408,
    )
