"""A job's level carried to its upstream (routing-file opt-ins): the engine's priority field,
and the offline service tier with its fallbacks, seen by the mock upstream."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from queue_service.models import TERMINAL_STATUSES, ResponseMode, Status
from queue_service.settings import Settings
from queue_service.store import TaskRecord
from tests.conftest import running_worker
from tests.helpers import put, put_body, wait_view
from tests.servers import CallbackReceiver
from workers.upstream_priority import LevelHints, with_priority

QUEUE = "hints"


def routed(settings: Settings, tmp_path: Path, mock_url: str, extra: str) -> Settings:
    """The test settings with a routing file: the chat endpoint of QUEUE goes to the mock,
    with the routing-file lines `extra`."""
    path = tmp_path / "upstreams.toml"
    path.write_text(
        f'[[upstream]]\nname = "mock"\nendpoint = "/v1/chat/completions"\nqueue = "{QUEUE}"\n'
        f'base_url = "{mock_url}"\n{extra}\n'
    )
    return settings.model_copy(update={"upstreams_file": str(path)})


@pytest.fixture
def callback(receiver: tuple[str, CallbackReceiver]) -> str:
    return receiver[0]


async def run_jobs(
    api: httpx.AsyncClient, settings: Settings, bodies: list[dict[str, Any]]
) -> list[str]:
    """Put every job and run them with a worker of `settings`; their end statuses, in order."""
    async with running_worker(settings):
        task_ids = [await put(api, body) for body in bodies]
        return [(await wait_view(api, task_id, ended))["status"] for task_id in task_ids]


def ended(view: dict[str, Any]) -> bool:
    return view["status"] in {status.value for status in TERMINAL_STATUSES}


def job(callback: str, level: int, text: str, **data: Any) -> dict[str, Any]:
    """A chat job on QUEUE whose message is `text` (more put_body keywords in `data`)."""
    return put_body(QUEUE, callback, text=text, level=level, **data)


def arrived(mock: Any, text: str) -> list[dict[str, Any]]:
    """The bodies of the mock's requests for the job whose message is `text`, in order."""
    return [
        request.body
        for request in mock.state.mock_requests
        if request.body["messages"][-1]["content"] == text
    ]


async def test_the_priority_field_carries_the_level_but_never_the_jobs_own_value(
    api: httpx.AsyncClient,
    settings: Settings,
    mock_upstream: tuple[str, Any],
    callback: str,
    tmp_path: Path,
) -> None:
    url, mock = mock_upstream
    tuned = routed(settings, tmp_path, url, 'priority_field = "priority"\npriority_offline = 10')
    jobs = [job(callback, 0, "online"), job(callback, 1, "offline")]
    jobs.append(job(callback, 1, "own", priority=-3))
    assert await run_jobs(api, tuned, jobs) == ["succeeded"] * 3
    assert [body["priority"] for body in arrived(mock, "online")] == [0]
    assert [body["priority"] for body in arrived(mock, "offline")] == [10]
    assert [body["priority"] for body in arrived(mock, "own")] == [-3]
    assert all("service_tier" not in request.body for request in mock.state.mock_requests)


async def test_without_the_keys_nothing_is_added(
    api: httpx.AsyncClient,
    settings: Settings,
    mock_upstream: tuple[str, Any],
    callback: str,
    tmp_path: Path,
) -> None:
    url, mock = mock_upstream
    tuned = routed(settings, tmp_path, url, "max_concurrency = 4")
    jobs = [job(callback, 0, "online"), job(callback, 1, "offline")]
    assert await run_jobs(api, tuned, jobs) == ["succeeded"] * 2
    for request in mock.state.mock_requests:
        assert set(request.body) == {"model", "messages"}


async def test_the_offline_tier_goes_with_level_1_only_and_never_over_the_jobs_own(
    api: httpx.AsyncClient,
    settings: Settings,
    mock_upstream: tuple[str, Any],
    callback: str,
    tmp_path: Path,
) -> None:
    url, mock = mock_upstream
    tuned = routed(settings, tmp_path, url, 'offline_service_tier = "flex"')
    jobs = [job(callback, 0, "online"), job(callback, 1, "offline")]
    jobs.append(job(callback, 1, "own", service_tier="auto"))
    assert await run_jobs(api, tuned, jobs) == ["succeeded"] * 3
    assert ["service_tier" in body for body in arrived(mock, "online")] == [False]
    assert [body["service_tier"] for body in arrived(mock, "offline")] == ["flex"]
    assert [body["service_tier"] for body in arrived(mock, "own")] == ["auto"]


async def test_a_refused_tier_falls_back_to_the_default_tier_at_once_spending_no_retry(
    api: httpx.AsyncClient,
    settings: Settings,
    mock_upstream: tuple[str, Any],
    callback: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, mock = mock_upstream
    tuned = routed(settings, tmp_path, url, 'offline_service_tier = "flex"')
    tuned = tuned.model_copy(update={"upstream_max_retries": 0})
    refusing = job(callback, 1, "refused", mock={"refuse_service_tier": "flex"})
    with caplog.at_level(logging.INFO, logger="workers.upstream_priority"):
        assert await run_jobs(api, tuned, [refusing]) == ["succeeded"]
    first, second = arrived(mock, "refused")
    assert first["service_tier"] == "flex"
    assert "service_tier" not in second
    assert "service tier flex given up (the upstream refused it (status 429))" in caplog.text


async def test_a_plain_rate_limit_is_retried_on_the_tier(
    api: httpx.AsyncClient,
    settings: Settings,
    mock_upstream: tuple[str, Any],
    callback: str,
    tmp_path: Path,
) -> None:
    url, mock = mock_upstream
    tuned = routed(settings, tmp_path, url, 'offline_service_tier = "flex"')
    limited = job(callback, 1, "limited", mock={"status": 429, "fail_times": 1, "key": "rl"})
    assert await run_jobs(api, tuned, [limited]) == ["succeeded"]
    assert [body["service_tier"] for body in arrived(mock, "limited")] == ["flex", "flex"]


async def test_near_its_deadline_a_job_goes_on_the_default_tier(
    api: httpx.AsyncClient,
    settings: Settings,
    mock_upstream: tuple[str, Any],
    callback: str,
    tmp_path: Path,
) -> None:
    url, mock = mock_upstream
    extra = 'offline_service_tier = "flex"\ntier_fallback_before_deadline = 30'
    tuned = routed(settings, tmp_path, url, extra)
    assert await run_jobs(api, tuned, [job(callback, 1, "late", timeout=20)]) == ["succeeded"]
    assert ["service_tier" in body for body in arrived(mock, "late")] == [False]


async def test_a_slow_tier_is_cut_off_as_the_deadline_nears_and_the_default_tier_answers(
    api: httpx.AsyncClient,
    settings: Settings,
    mock_upstream: tuple[str, Any],
    callback: str,
    tmp_path: Path,
) -> None:
    url, mock = mock_upstream
    extra = 'offline_service_tier = "flex"\ntier_fallback_before_deadline = 3'
    tuned = routed(settings, tmp_path, url, extra)
    slow = job(callback, 1, "slow", timeout=5, mock={"service_tier_delay": 60})
    started = time.monotonic()
    assert await run_jobs(api, tuned, [slow]) == ["succeeded"]
    assert time.monotonic() - started < 5
    first, second = arrived(mock, "slow")
    assert first["service_tier"] == "flex"
    assert "service_tier" not in second


def record(endpoint: str, level: int) -> TaskRecord:
    mode = ResponseMode.CALLBACK
    return TaskRecord("TASK-1", QUEUE, level, mode, endpoint, b"{}", "", "", Status.RUNNING, 0, 0)


def test_the_priority_goes_into_json_bodies_only() -> None:
    hints = LevelHints(priority_field="priority")
    assert with_priority(hints, record("/v1/embeddings", 1), {"input": "x"})["priority"] == 1
    form = {"model": "whisper-1"}
    assert with_priority(hints, record("/v1/audio/transcriptions", 1), form) is form
    submit = {"prompt": "cat"}
    assert with_priority(hints, record("/mj/submit/imagine", 0), submit) is submit
