"""Fair shares hold across worker processes: a tenant putting a few jobs behind another's
big backlog on the same queue is served in turn, not after the backlog."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import httpx

from queue_service.api.app import create_app
from queue_service.settings import Settings
from tests.helpers import put, put_body
from tests.servers import CallbackReceiver, serve

from .conftest import process_env

BIG, SMALL = "big-key-0001", "small-key-0001"


async def test_a_small_tenant_is_served_in_turn_behind_a_big_backlog_across_workers(
    settings: Settings,
    mock_upstream: tuple[str, Any],
    receiver: tuple[str, CallbackReceiver],
) -> None:
    url, inbox = receiver
    keyed = settings.model_copy(update={"api_keys": f"big:{BIG},small:{SMALL}"})
    env = process_env(
        settings.redis_url,
        settings.key_prefix,
        upstream_url=mock_upstream[0],
        concurrency="4",
        online_reserved_slots="0",
        log_level="WARNING",
    )
    command = [sys.executable, "-m", "queue_service", "worker"]
    workers = [
        await asyncio.to_thread(subprocess.Popen, command, env=env, stdin=subprocess.DEVNULL)
        for _ in range(2)
    ]
    try:
        async with serve(create_app(keyed)) as api_url, httpx.AsyncClient(base_url=api_url) as api:

            async def put_as(key: str, text: str) -> str:
                body = put_body("shared", url, text=text, mock={"ttft": 0.1})
                return await put(api, body, headers={"authorization": f"Bearer {key}"})

            for n in range(200):
                await put_as(BIG, f"big-{n}")
            for n in range(12):
                await put_as(SMALL, f"small-{n}")
            await inbox.wait_for(212, timeout=60)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            await asyncio.to_thread(worker.wait, 30)
    arrivals = sorted(
        (r.received_at, r.body["messages"][-1]["content"])
        for r in mock_upstream[1].state.mock_requests
    )
    order = [text.split("-")[0] for _, text in arrivals]
    first_small, last_small = order.index("small"), len(order) - 1 - order[::-1].index("small")
    big_meanwhile = order[first_small:last_small].count("big")
    # Turn about, the small tenant's 12 jobs start within about 12 of the big one's (plus the
    # 8 slots' worth already under way); first come, first served would put them after the
    # big tenant's whole remaining backlog.
    assert big_meanwhile <= 12 + 8, order
    assert order.count("big") - order[:last_small].count("big") >= 100, order
