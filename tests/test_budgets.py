"""Budgets hold jobs instead of failing them: a route's requests per minute kept to its
upstream's limit (no 429 earned), a 429's cooldown honoured by every worker, a tenant's token
estimate settled with the answer's usage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from queue_service.api.app import create_app
from queue_service.mock_upstream import MockConfig, create_mock_app
from queue_service.settings import Settings
from tests.helpers import eventually, put, put_body
from tests.servers import CallbackReceiver, serve

from .conftest import running_worker

RPM = 120


@pytest.fixture
async def limited_upstream() -> AsyncIterator[tuple[str, Any]]:
    """A mock upstream allowing `RPM` requests a minute (429 with Retry-After beyond)."""
    app = create_mock_app(MockConfig(rpm=RPM))
    async with serve(app) as url:
        yield url, app


def routed(settings: Settings, tmp_path: Path, upstream_url: str, extra: str = "") -> Settings:
    routes = tmp_path / "upstreams.toml"
    routes.write_text(
        f'[[upstream]]\nname = "limited"\nendpoint = "/v1/chat/completions"\n'
        f'base_url = "{upstream_url}"\n{extra}'
    )
    return settings.model_copy(update={"upstreams_file": str(routes)})


async def run_jobs(settings: Settings, url: str, inbox: CallbackReceiver, count: int) -> None:
    async with (
        serve(create_app(settings)) as api_url,
        httpx.AsyncClient(base_url=api_url) as api,
        running_worker(settings),
    ):
        for n in range(count):
            await put(api, put_body("budgeted", url, text=f"job {n}", mock={"tokens": 1}))
        await inbox.wait_for(count, timeout=30)


@pytest.mark.parametrize("budget", [True, False])
async def test_a_route_kept_to_its_upstreams_rpm_earns_no_429(
    settings: Settings,
    tmp_path: Path,
    limited_upstream: tuple[str, Any],
    receiver: tuple[str, CallbackReceiver],
    budget: bool,
) -> None:
    url, inbox = receiver
    extra = f"rpm = {RPM}\n" if budget else ""
    await run_jobs(routed(settings, tmp_path, limited_upstream[0], extra), url, inbox, RPM + 4)
    assert {callback["status"] for callback in inbox.received} == {"succeeded"}
    earned = limited_upstream[1].state.mock_rate_limited[0]
    if budget:
        assert earned == 0  # the jobs beyond the minute's worth waited for budget
    else:
        assert earned > 0  # without a budget they were sent, refused, then retried


async def test_a_429_pauses_the_route_for_every_worker(
    settings: Settings,
    mock_upstream: tuple[str, Any],
    receiver: tuple[str, CallbackReceiver],
) -> None:
    url, inbox = receiver
    pushed_back = {"status": 429, "retry_after": 2, "fail_times": 1, "key": "pause"}
    async with (
        serve(create_app(settings)) as api_url,
        httpx.AsyncClient(base_url=api_url) as api,
        running_worker(settings),
        running_worker(settings),
    ):
        await put(api, put_body("paused", url, text="first", mock=pushed_back))
        requests = mock_upstream[1].state.mock_requests
        await eventually(lambda: len(requests) == 1)
        refused_at = requests[0].received_at
        for n in range(4):  # whichever worker takes them, they wait out the pause
            await put(api, put_body("paused", url, text=f"then {n}", mock={"tokens": 1}))
        await inbox.wait_for(5, timeout=15)
    later = [r.received_at - refused_at for r in requests[1:]]
    assert len(later) == 5
    assert min(later) >= 1.9, later  # nothing reached the upstream during its 2 s pause


async def test_a_tenants_token_estimate_is_settled_with_the_answers_usage(
    settings: Settings, tmp_path: Path, receiver: tuple[str, CallbackReceiver]
) -> None:
    url, inbox = receiver
    keys = tmp_path / "keys.toml"
    keys.write_text('[[key]]\nkey = "tenant-key-01"\ntenant = "thrifty"\ntpm = 6000\n')
    keyed = settings.model_copy(update={"api_keys_file": str(keys)})
    headers = {"authorization": "Bearer tenant-key-01"}
    async with (
        serve(create_app(keyed)) as api_url,
        httpx.AsyncClient(base_url=api_url) as api,
        running_worker(keyed),
    ):
        loop = asyncio.get_running_loop()
        started = loop.time()
        for n in range(3):  # each may use 5,000 tokens: without settling, ~100 s of budget
            body = put_body("thrifty", url, text=f"job {n}", max_tokens=5000, mock={"tokens": 3})
            await put(api, body, headers=headers)
            await inbox.wait_for(n + 1, timeout=15)
        elapsed = loop.time() - started
    assert {callback["status"] for callback in inbox.received} == {"succeeded"}
    assert elapsed < 10  # each answer used ~10 tokens: the estimate came back at once


async def test_jobs_waiting_for_budget_leave_the_slots_to_other_tenants(
    settings: Settings,
    tmp_path: Path,
    mock_upstream: tuple[str, Any],
    receiver: tuple[str, CallbackReceiver],
) -> None:
    url, inbox = receiver
    keys = tmp_path / "keys.toml"
    keys.write_text(
        '[[key]]\nkey = "slow-key-0001"\ntenant = "slow"\nrpm = 2\n'
        '[[key]]\nkey = "fast-key-0001"\ntenant = "fast"\n'
    )
    tight = settings.model_copy(
        update={"api_keys_file": str(keys), "concurrency": 2, "online_reserved_slots": 0}
    )
    async with (
        serve(create_app(tight)) as api_url,
        httpx.AsyncClient(base_url=api_url) as api,
        running_worker(tight),
    ):
        slow = {"authorization": "Bearer slow-key-0001"}
        for n in range(6):  # 2 go at once; 4 would hold both slots for minutes
            await put(
                api, put_body("shared", url, text=f"slow {n}", mock={"tokens": 1}), headers=slow
            )
        await inbox.wait_for(2, timeout=10)
        fast = {"authorization": "Bearer fast-key-0001"}
        for n in range(3):
            await put(
                api, put_body("shared", url, text=f"fast {n}", mock={"tokens": 1}), headers=fast
            )
        await inbox.wait_for(5, timeout=10)
    texts = [r.body["messages"][-1]["content"] for r in mock_upstream[1].state.mock_requests]
    # The fast tenant's jobs ran in seconds; the slow one's sent no more than its budget
    # (a parked job goes back to the end of its lane: which two of its six went may vary).
    assert sorted(text.split()[0] for text in texts) == ["fast"] * 3 + ["slow"] * 2


async def test_a_job_waiting_for_budget_still_ends_at_its_deadline(
    settings: Settings,
    tmp_path: Path,
    mock_upstream: tuple[str, Any],
    receiver: tuple[str, CallbackReceiver],
) -> None:
    url, inbox = receiver
    once = routed(settings, tmp_path, mock_upstream[0], "rpm = 1\n")  # then a minute to wait
    async with (
        serve(create_app(once)) as api_url,
        httpx.AsyncClient(base_url=api_url) as api,
        running_worker(once),
    ):
        await put(api, put_body("budgeted", url, text="first", mock={"tokens": 1}))
        await inbox.wait_for(1, timeout=10)
        loop = asyncio.get_running_loop()
        put_at = loop.time()
        await put(api, put_body("budgeted", url, text="late", timeout=2, mock={"tokens": 1}))
        (_, late) = await inbox.wait_for(2, timeout=10)
        waited = loop.time() - put_at
    assert (late["status"], late["status_code"]) == ("timeout", 408)
    assert waited < 5  # its deadline, not the minute its budget needed
    assert len(mock_upstream[1].state.mock_requests) == 1
