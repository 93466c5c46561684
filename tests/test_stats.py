"""Operators' view: metrics after a known workload, queue stats, workers, pause/resume."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from arq.worker import Worker
from redis.asyncio import Redis

from queue_service.cli.operator import print_stats, print_workers
from queue_service.settings import Settings
from queue_service.store.keys import Keys
from tests.helpers import callback_settled, eventually, put, put_body, view, wait_view
from tests.servers import CallbackReceiver

from .conftest import process_env, running_worker

job = partial(put_body, "ops", mock={})


def metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric line starts with {line_start!r}")


async def settle(api: httpx.AsyncClient, task_ids: list[str]) -> None:
    for task_id in task_ids:
        await wait_view(api, task_id, callback_settled)


async def test_metrics_after_a_known_workload(
    api: httpx.AsyncClient, worker: Worker, receiver: tuple[str, CallbackReceiver]
) -> None:
    url, inbox = receiver
    ids = [await put(api, job(url)) for _ in range(3)]
    ids.append(await put(api, job(url, level=0, mock={"status": 400})))
    await inbox.wait_for(4)
    await settle(api, ids)
    text = (await api.get("/metrics")).text
    assert metric(text, 'queue_put_total{level="1",mode="callback",queue="ops"}') == 3
    assert metric(text, 'queue_put_total{level="0",mode="callback",queue="ops"}') == 1
    assert (
        metric(
            text, 'queue_finished_total{level="1",mode="callback",queue="ops",status="succeeded"}'
        )
        == 3
    )
    assert (
        metric(text, 'queue_finished_total{level="0",mode="callback",queue="ops",status="failed"}')
        == 1
    )
    assert metric(text, 'queue_upstream_status_total{code="200",queue="ops"}') == 3
    assert metric(text, 'queue_upstream_status_total{code="400",queue="ops"}') == 1
    assert metric(text, 'queue_callbacks_total{queue="ops",result="delivered"}') == 4
    assert (
        metric(text, 'queue_end_to_end_seconds_count{level="1",mode="callback",queue="ops"}') == 3
    )
    assert (
        metric(text, 'queue_pickup_seconds_bucket{le="+Inf",level="1",mode="callback",queue="ops"}')
        == 3
    )
    assert metric(text, 'queue_waiting_jobs{level="1",queue="ops"}') == 0
    assert metric(text, "queue_workers ") >= 1


async def test_queue_stats_show_waiting_totals_and_workers(
    api: httpx.AsyncClient, settings: Settings, receiver: tuple[str, CallbackReceiver]
) -> None:
    url, inbox = receiver
    for _ in range(2):
        await put(api, job(url))
    stats = (await api.get("/v1/queue/ops/stats")).json()["data"]
    assert stats["levels"]["1"]["waiting"] == 2
    assert stats["levels"]["1"]["oldest_waiting_s"] >= 0
    assert stats["totals"] == {"put": 2}
    assert stats["workers"] == []
    beating = settings.model_copy(update={"heartbeat_interval": 0.1})
    async with running_worker(beating) as worker:
        await inbox.wait_for(2)

        async def stats_after_a_heartbeat() -> dict[str, Any] | None:
            stats: dict[str, Any] = (await api.get("/v1/queue/ops/stats")).json()["data"]
            return stats if stats["workers"] == [worker.ctx["runtime"].name] else None

        stats = await eventually(stats_after_a_heartbeat, timeout=5)
        assert stats["workers"] == [worker.ctx["runtime"].name]
    assert stats["levels"]["1"] == {
        "waiting": 0,
        "in_flight": 0,
        "oldest_waiting_s": None,
        "totals": {"put": 2, "succeeded": 2},
    }
    assert stats["levels"]["0"]["totals"] == {}
    assert stats["totals"]["succeeded"] == 2
    assert (await api.get("/v1/queue/nope/stats")).status_code == 404


async def test_a_paused_queue_accepts_puts_but_runs_nothing_until_resumed(
    api: httpx.AsyncClient,
    worker: Worker,
    receiver: tuple[str, CallbackReceiver],
    redis: Redis,
    prefix: str,
) -> None:
    url, inbox = receiver
    await put(api, job(url))
    await inbox.wait_for(1)
    assert (await api.post("/v1/queue/ops/pause")).json()["data"] == {
        "queue": "ops",
        "paused": True,
    }
    held = await put(api, job(url))
    ready = Keys(prefix).ready_queues(1, "")

    async def passed_over() -> bool:
        """The worker looked for work and dropped the paused queue from the ready set."""
        return await redis.zscore(ready, "ops") is None

    await eventually(passed_over)
    assert (await view(api, held))["status"] == "queued"
    assert len(inbox.received) == 1
    assert (await api.get("/v1/queue/ops/stats")).json()["data"]["paused"] is True
    await api.post("/v1/queue/ops/resume")
    await inbox.wait_for(2)


def test_operator_commands(settings: Settings, capsys: Any) -> None:
    env = process_env(settings.redis_url, settings.key_prefix)
    check = [str(Path(sys.executable).parent / "queue-service"), "worker", "--check"]
    assert subprocess.run(check, env=env, capture_output=True, timeout=30).returncode == 1
    print_stats(settings)
    print_workers(settings)
    out = capsys.readouterr().out
    assert "queue  level  waiting" in out
    assert "worker  host  pid" in out


async def test_worker_check_passes_while_a_worker_lives(settings: Settings, redis: Redis) -> None:
    env = process_env(settings.redis_url, settings.key_prefix)
    check = [str(Path(sys.executable).parent / "queue-service"), "worker", "--check"]
    async with running_worker(settings) as worker:
        runtime = worker.ctx["runtime"]
        await eventually(
            lambda: redis.hexists(runtime.store.keys.workers, runtime.name)
        )  # a heartbeat
        done = await asyncio.to_thread(
            subprocess.run, check, env=env, capture_output=True, timeout=30
        )
    assert done.returncode == 0
    assert b"1 worker(s) alive" in done.stdout


async def test_each_state_change_is_one_log_line_json_when_asked(
    api: httpx.AsyncClient,
    worker: Worker,
    receiver: tuple[str, CallbackReceiver],
    caplog: Any,
) -> None:
    import logging

    import orjson

    from queue_service.logs import JsonFormatter

    caplog.set_level(logging.INFO)
    url, inbox = receiver
    task_id = await put(api, job(url))
    await inbox.wait_for(1)
    lines = [r for r in caplog.records if task_id in r.getMessage()]
    states = [r.getMessage().split()[2] for r in lines]
    assert states[:3] == ["queued", "running", "succeeded"]
    assert all("queue ops, level 1" in r.getMessage() for r in lines[:3])
    entry = orjson.loads(JsonFormatter().format(lines[2]))
    assert entry["level"] == "INFO"
    assert task_id in entry["message"]
