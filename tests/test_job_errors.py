"""An unexpected error inside a job (a bug, an input nobody foresaw) ends that job `failed` at
once: 500, error type `internal`, a message naming the exception's type only. No redelivery
loop until "worker lost 5 times", no waiting client left hanging until its timeout, and the
exception's text (which may quote a request's headers) in no log line."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq.worker import Worker

from queue_service.settings import Settings
from tests.conftest import running_worker
from tests.helpers import CHAT, put, put_body, view, wait_view
from tests.servers import CallbackReceiver
from workers.adapters import ADAPTERS

SECRET = "sk-SECRET-0123456789abcdef"
"""The upstream key: the crashing adapter's exception quotes it, as a careless error might."""


@pytest.fixture
def crashing_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chat adapter fails with an error nobody handles, its text quoting the upstream key
    (it comes from the job's route at run time, as a real header would)."""

    def crash(upstream: Any) -> RuntimeError:
        return RuntimeError(f"bad header Authorization: Bearer {upstream.api_key}")

    async def call(client: httpx.AsyncClient, upstream: Any, *args: Any, **kwargs: Any) -> Any:
        raise crash(upstream)

    def stream(client: httpx.AsyncClient, upstream: Any, *args: Any, **kwargs: Any) -> Any:
        raise crash(upstream)

    adapter = ADAPTERS[CHAT]
    monkeypatch.setattr(adapter, "call", call)
    monkeypatch.setattr(adapter, "stream", stream)


@pytest.fixture
async def crashing_worker(
    settings: Settings, crashing_adapter: None, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Worker]:
    caplog.set_level(logging.DEBUG)
    keyed = settings.model_copy(update={"upstream_api_key": SECRET})
    async with running_worker(keyed) as worker:
        yield worker


def assert_internal_failure(body: dict[str, Any]) -> None:
    error = body["error"]
    assert error["type"] == "internal", body
    assert "RuntimeError" in error["message"], body
    assert SECRET not in error["message"]
    assert "Bearer" not in error["message"]


def assert_secret_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert caplog.records, "nothing was logged"
    assert any("RuntimeError" in record.getMessage() for record in caplog.records)
    for record in caplog.records:
        assert SECRET not in record.getMessage(), record.getMessage()
    assert SECRET not in caplog.text  # tracebacks included


@pytest.mark.parametrize("mode", ["blocking", "streaming"])
async def test_a_waiting_client_gets_the_500_at_once_not_at_its_timeout(
    api: httpx.AsyncClient,
    crashing_worker: Worker,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    body = put_body("crash-wait", level=0, mode=mode, timeout=8)
    started = time.monotonic()
    response = await api.post("/v1/queue/put", json=body, timeout=15)
    elapsed = time.monotonic() - started

    assert response.status_code == 500, (response.status_code, response.text)
    assert elapsed < 3, f"answered after {elapsed:.1f}s"
    assert_internal_failure(response.json())
    task_id = response.headers["x-task-id"]
    seen = await view(api, task_id)
    assert seen["status"] == "failed"
    assert seen["status_code"] == 500
    assert seen["attempts"] == 1  # ended on its first run, not redelivered
    assert_internal_failure(seen["result"])
    assert_secret_never_logged(caplog)


async def test_a_callback_job_calls_back_failed_at_once(
    api: httpx.AsyncClient,
    crashing_worker: Worker,
    receiver: tuple[str, CallbackReceiver],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, inbox = receiver
    task_id = await put(api, put_body("crash-callback", url))
    (callback,) = await inbox.wait_for(1, timeout=5)

    assert callback["task_id"] == task_id
    assert callback["status"] == "failed"
    assert callback["status_code"] == 500
    assert_internal_failure(callback["body"])
    seen = await wait_view(api, task_id, lambda v: v["callback"]["status"] == "delivered")
    assert seen["status"] == "failed"
    assert seen["attempts"] == 1
    assert_secret_never_logged(caplog)
