"""Budgets against an upstream that enforces its own requests and tokens per minute: the same
2,000 jobs with the route's budgets set to the upstream's limits (they wait for budget) and
without (today's baseline: sent, refused with 429, retried), in the same run."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from scripts.bench.lib import MockUpstream, Stack, report

QUEUE = "bench-budgets"


async def _run(jobs: int, rpm: int, tpm: int, budgeted: bool, redis_url: str) -> dict[str, float]:
    with MockUpstream("--rpm", str(rpm), "--tpm", str(tpm)) as upstream:
        routes = Path(tempfile.mkdtemp()) / "upstreams.toml"
        budget = f"rpm = {rpm}\ntpm = {tpm}\ndefault_max_tokens = 16\n" if budgeted else ""
        routes.write_text(
            f'[[upstream]]\nname = "limited"\nendpoint = "/v1/chat/completions"\n'
            f'base_url = "{upstream.url}"\n{budget}'
        )
        stack = Stack(upstream.url, concurrency=32, env_extra={"QUEUE_UPSTREAMS_FILE": str(routes)})
        await asyncio.to_thread(stack.start, redis_url)
        try:
            async with httpx.AsyncClient(timeout=60) as client:
                limit = asyncio.Semaphore(32)

                async def put_one(n: int) -> None:
                    body = {
                        "queue": QUEUE,
                        "endpoint": "/v1/chat/completions",
                        "level": 1,
                        "callback_url": f"{upstream.url}/_mock/callbacks",
                        "data": {
                            "model": "m",
                            "messages": [{"role": "user", "content": f"job {n} of the run"}],
                            "max_tokens": 16,
                            "mock": {"tokens": 8},
                        },
                    }
                    async with limit:
                        answer = await client.post(f"{stack.api_url}/v1/queue/put", json=body)
                        answer.raise_for_status()

                started = time.monotonic()
                await asyncio.gather(*(put_one(n) for n in range(jobs)))
                received = await upstream.callbacks(client, jobs)
                elapsed = time.monotonic() - started
                limited = (await client.get(f"{upstream.url}/_mock/rate-limited")).json()
                recorded = (await client.get(f"{upstream.url}/_mock/requests")).json()
        finally:
            await asyncio.to_thread(stack.stop)
    statuses = Counter(callback["status"] for callback in received)
    return {
        "seconds": elapsed,
        "limited": limited["limited"],
        "requests": len(recorded),
        "succeeded": statuses["succeeded"],
        "failed": statuses["failed"],
    }


async def budgets(args: argparse.Namespace, redis_url: str) -> None:
    jobs, rpm, tpm = (300, 240, 12_000) if args.quick else (2000, 1200, 60_000)
    without = await _run(jobs, rpm, tpm, False, redis_url)
    with_budgets = await _run(jobs, rpm, tpm, True, redis_url)
    table = [
        f"| {jobs} jobs, upstream allows {rpm} rpm and {tpm} tpm | 429s earned | requests sent"
        " | retries | succeeded | failed | all done after (s) |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for name, run in (("baseline: no budgets", without), ("budgets = its limits", with_budgets)):
        retries = int(run["requests"] - jobs)
        table.append(
            f"| {name} | {run['limited']:.0f} | {run['requests']:.0f} | {retries} "
            f"| {run['succeeded']:.0f} | {run['failed']:.0f} | {run['seconds']:.1f} |"
        )
    notes = [
        "One API process, one worker (32 slots), the mock upstream enforcing its limits as token",
        "buckets (a minute's worth at most, replenished continuously; 429 with Retry-After",
        "beyond). With budgets the route's `rpm`/`tpm` in the routing file equal the mock's: jobs",
        "wait for budget in the worker and the upstream never refuses one. Without, jobs are sent",
        "as slots free, refused, and retried (each 429 also pauses the route for every worker).",
    ]
    report("budgets", args.command, table, notes)
