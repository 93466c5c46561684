"""Midjourney jobs of 30 s each through one worker with 16 slots: the follower reads their
upstream tasks in batches without holding a slot, so they all finish in about 30 s (not
jobs x 30 s / 16), with a few read requests a second (not one per task)."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

import httpx

from scripts.bench.lib import MockUpstream, Stack, report

IMAGINE = "/mj/submit/imagine"
READ = "/mj/task/list-by-condition"


async def task_apis(args: argparse.Namespace, redis_url: str) -> None:
    jobs, seconds, slots = (200, 10.0, 16) if args.quick else (1000, 30.0, 16)
    with MockUpstream() as upstream:
        stack = Stack(upstream.url, concurrency=slots)
        await asyncio.to_thread(stack.start, redis_url)
        try:
            async with httpx.AsyncClient(timeout=60) as client:
                put = {
                    "queue": "bench-mj",
                    "endpoint": IMAGINE,
                    "level": 1,
                    "callback_url": f"{upstream.url}/_mock/callbacks",
                    "data": {"prompt": "a lighthouse at dawn", "mock": {"duration": seconds}},
                }
                limit = asyncio.Semaphore(32)

                async def put_one() -> None:
                    async with limit:
                        answer = await client.post(f"{stack.api_url}/v1/queue/put", json=put)
                        answer.raise_for_status()

                started = time.monotonic()
                await asyncio.gather(*(put_one() for _ in range(jobs)))
                put_s = time.monotonic() - started
                received = await upstream.callbacks(client, jobs)
                elapsed = time.monotonic() - started
                recorded = (await client.get(f"{upstream.url}/_mock/requests")).json()
        finally:
            await asyncio.to_thread(stack.stop)
    statuses = Counter(callback["status"] for callback in received)
    paths = Counter(request["path"] for request in recorded)
    reads = paths[READ]
    read_ids = sum(len(r["body"]["ids"]) for r in recorded if r["path"] == READ)
    held = jobs * seconds / slots
    table = [
        "| figure | value |",
        "|---|--:|",
        f"| jobs (each {seconds:.0f} s upstream), one worker, {slots} slots | {jobs} |",
        f"| all puts accepted after (s) | {put_s:.1f} |",
        f"| all callbacks received after (s) | {elapsed:.1f} |",
        f"| baseline: one upstream task's own duration (s) | {seconds:.0f} |",
        f"| baseline: holding a slot while waiting, {jobs} x {seconds:.0f} s / {slots} (s) "
        f"| {held:.0f} |",
        f"| submits sent upstream | {paths[IMAGINE]} |",
        f"| read requests (`list-by-condition`) | {reads} |",
        f"| read requests per second | {reads / elapsed:.1f} |",
        f"| tasks per read request (mean) | {read_ids / max(reads, 1):.0f} |",
        f"| outcomes | {dict(statuses)} |",
    ]
    notes = [
        "One API process, one worker (`QUEUE_CONCURRENCY=16`, default `QUEUE_TASK_POLL_*`),",
        "the mock upstream's Midjourney API, callbacks to the mock's inbox. The second",
        "baseline is computed, not run: it is what a worker holding a slot per waiting task",
        "would take at best.",
    ]
    report("task-apis", args.command, table, notes)
