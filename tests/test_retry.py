"""Upstream failures: what is retried, how long it waits, what the job ends with."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from arq.worker import Worker

from queue_service.settings import Settings
from queue_service.timing import backoff
from tests.helpers import put_body
from workers.retry import parse_retry_after, retryable_status

from .conftest import running_worker


def blocking(**mock: Any) -> dict[str, Any]:
    return put_body("retries", level=0, mode="blocking", mock=mock)


def test_which_statuses_are_retried() -> None:
    assert [
        c for c in (200, 400, 401, 404, 408, 422, 429, 500, 502, 503) if retryable_status(c)
    ] == [
        429,
        500,
        502,
        503,
    ]


def test_retry_after_in_seconds_and_as_a_date() -> None:
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < (parse_retry_after(later) or 0) <= 30


def test_backoff_grows_with_jitter_and_stays_under_the_cap() -> None:
    for attempt in range(1, 12):
        delay = backoff(attempt, base=0.5, cap=8.0)
        ceiling = min(0.5 * 2 ** (attempt - 1), 8.0)
        assert ceiling / 2 <= delay <= ceiling


async def test_429_with_retry_after_then_200_succeeds_after_about_a_second(
    api: httpx.AsyncClient, worker: Worker, mock_upstream: tuple[str, Any]
) -> None:
    started = time.monotonic()
    body = blocking(status=429, retry_after=1, fail_times=1, key="r429")
    response = await api.post("/v1/queue/put", json=body)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"
    assert elapsed >= 0.95
    assert len(mock_upstream[1].state.mock_requests) == 2


async def test_a_400_fails_at_once_with_the_upstream_body(
    api: httpx.AsyncClient, worker: Worker, mock_upstream: tuple[str, Any]
) -> None:
    response = await api.post("/v1/queue/put", json=blocking(status=400))
    assert response.status_code == 400
    assert "error" in response.json()
    assert len(mock_upstream[1].state.mock_requests) == 1


async def test_a_5xx_is_retried_up_to_the_limit_then_kept(
    api: httpx.AsyncClient, settings: Settings, mock_upstream: tuple[str, Any]
) -> None:
    async with running_worker(settings.model_copy(update={"upstream_max_retries": 2})):
        response = await api.post("/v1/queue/put", json=blocking(status=503))
    assert response.status_code == 503
    assert "error" in response.json()
    assert len(mock_upstream[1].state.mock_requests) == 3


async def test_retries_stop_at_the_deadline(
    api: httpx.AsyncClient, settings: Settings, mock_upstream: tuple[str, Any]
) -> None:
    tuned = settings.model_copy(update={"upstream_max_retries": 50})
    async with running_worker(tuned):
        body = {**blocking(status=503, retry_after=0.4), "timeout": 1}
        started = time.monotonic()
        response = await api.post("/v1/queue/put", json=body)
    assert response.status_code in (408, 503)
    assert time.monotonic() - started < 3
    assert 1 <= len(mock_upstream[1].state.mock_requests) <= 4


@pytest.mark.parametrize("upstream", ["http://127.0.0.1:9"])
async def test_network_failures_are_retried_then_reported(
    api: httpx.AsyncClient, settings: Settings, upstream: str
) -> None:
    tuned = settings.model_copy(update={"upstream_url": upstream, "upstream_max_retries": 2})
    async with running_worker(tuned):
        response = await api.post("/v1/queue/put", json=blocking())
    assert response.status_code == 502
    assert "ConnectError" in response.json()["error"]["message"]
