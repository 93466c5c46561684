"""Benchmarks of queue-service against baselines measured in the same run.

    python -m scripts.bench [scenario ...] [--quick]

Scenarios: pickup, blocking, streaming, held, throughput, memory, batch, transcription,
task-apis, budgets, worker, fairness, many-queues (all when none is named). Each prints a
table and writes its section of BENCHMARKS.md with the machine and the command.
Every figure sits next to a baseline from the same run: these machines are shared and
noisy, so ratios and differences mean more than absolute numbers. `--quick` takes few
samples, for a smoke run. Run from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

import httpx
from redis.asyncio import Redis

from queue_service.models import PutRequest
from queue_service.store import Store
from queue_service.store.keys import Keys
from scripts.bench.batch import batch
from scripts.bench.blocking import blocking
from scripts.bench.budgets import budgets
from scripts.bench.fairness import fairness
from scripts.bench.held import held
from scripts.bench.lib import MockUpstream, Stack, redis_for_bench, report, summary_ms
from scripts.bench.many_queues import many_queues
from scripts.bench.memory import memory
from scripts.bench.streaming import streaming
from scripts.bench.task_apis import task_apis
from scripts.bench.throughput import throughput
from scripts.bench.transcription import transcription
from scripts.bench.worker import worker


def chat(text: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], "mock": {"tokens": 1}}


class Sample(NamedTuple):
    sent: float
    answered: float
    arrived: float


async def pickup(args: argparse.Namespace, redis_url: str) -> None:
    """Time from sending a put to the upstream receiving the job, one job at a time."""
    jobs = 100 if args.quick else 500
    with MockUpstream() as upstream:
        stack = Stack(upstream.url)
        await asyncio.to_thread(stack.start, redis_url)
        try:
            async with httpx.AsyncClient() as client:
                direct = await _timed(
                    client,
                    upstream,
                    jobs,
                    "direct",
                    lambda text: client.post(
                        f"{upstream.url}/v1/chat/completions", json=chat(text)
                    ),
                )

                def job(text: str) -> dict[str, Any]:
                    return {
                        "queue": "bench-pickup",
                        "endpoint": "/v1/chat/completions",
                        "level": 0,
                        "data": chat(text),
                        "callback_url": f"{upstream.url}/_mock/callbacks",
                    }

                queued = await _timed(
                    client,
                    upstream,
                    jobs,
                    "queued",
                    lambda text: client.post(f"{stack.api_url}/v1/queue/put", json=job(text)),
                )
                direct_store = Store(
                    Redis.from_url(redis_url),
                    Keys(stack.prefix),
                    redis_url=redis_url,
                    retention_s=3600,
                )
                direct_store.ids.instance = 9999
                tasks = direct_store.tasks

                async def store(text: str) -> None:
                    request = PutRequest.model_validate(job(text), strict=False)
                    await tasks.submit(await tasks.prepare(request, "", 60))

                stored = await _timed(client, upstream, jobs, "stored", store)
                await direct_store.aclose()
        finally:
            await asyncio.to_thread(stack.stop)
    hop = summary_ms([s.arrived - s.sent for s in direct])
    pickup_low = summary_ms([s.arrived - s.answered for s in stored])
    pickup_high = summary_ms([s.arrived - s.sent for s in stored])
    end_to_end = summary_ms([s.arrived - s.sent for s in queued])
    after_answer = summary_ms([s.arrived - s.answered for s in queued])
    put_answer = summary_ms([s.answered - s.sent for s in queued])
    table = [
        "| measured | median ms | p99 ms |",
        "|---|---|---|",
        f"| baseline: one HTTP hop, client → mock upstream | {hop[0]:.2f} | {hop[1]:.2f} |",
        f"| put answered (client → API → Redis → client) | {put_answer[0]:.2f} "
        f"| {put_answer[1]:.2f} |",
        f"| **pickup**: job stored in Redis → upstream receives it | {pickup_low[0]:.2f}"
        f"–{pickup_high[0]:.2f} | {pickup_low[1]:.2f}–{pickup_high[1]:.2f} |",
        f"| put answered → upstream receives the job | {after_answer[0]:.2f} "
        f"| {after_answer[1]:.2f} |",
        f"| end to end, put sent → upstream receives the job | {end_to_end[0]:.2f} "
        f"| {end_to_end[1]:.2f} |",
        f"| end to end ÷ baseline hop | {end_to_end[0] / hop[0]:.2f}× | |",
    ]
    notes = [
        f"{jobs} jobs per row, one at a time (level 0, callback mode); one API process, one",
        "worker and the mock upstream, each its own process; wall-clock times across processes.",
        "Pickup: the bench stores the job itself with the same atomic put the API uses",
        "(`Tasks.submit`), so the moment it lands lies between the call's start and return; the",
        "range gives both bounds. It holds one HTTP hop (worker → upstream), like the baseline.",
        "End to end adds the client → API hop. Target: pickup median under 3 ms (arq's own",
        "queue polls every 500 ms).",
    ]
    report("pickup", args.command, table, notes)


async def _timed(
    client: httpx.AsyncClient,
    upstream: MockUpstream,
    count: int,
    tag: str,
    send: Callable[[str], Coroutine[Any, Any, httpx.Response | None]],
) -> list[Sample]:
    """Send `count` requests one at a time; match each to its arrival at the upstream."""
    sent_at: dict[str, tuple[float, float]] = {}
    warmup = 10
    for n in range(count + warmup):
        text = f"{tag} {n}"
        sent = time.time()
        response = await send(text)
        answered = time.time()
        if response is not None:
            response.raise_for_status()
        if n >= warmup:
            sent_at[text] = (sent, answered)
        await asyncio.sleep(0.02)  # let the job finish: measure an idle queue
    arrivals = await upstream.arrivals()
    return [Sample(sent, answered, arrivals[text]) for text, (sent, answered) in sent_at.items()]


SCENARIOS = {
    "pickup": pickup,
    "blocking": blocking,
    "streaming": streaming,
    "held": held,
    "throughput": throughput,
    "memory": memory,
    "batch": batch,
    "transcription": transcription,
    "task-apis": task_apis,
    "budgets": budgets,
    "worker": worker,
    "fairness": fairness,
    "many-queues": many_queues,
}


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__)
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], default=[])
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    parser.add_argument(
        "--before",
        metavar="PATH",
        help="memory: measure the service code at PATH too (e.g. a worktree at an older tag)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="worker: run the workers under py-spy, folded stacks to DIR (see BENCHMARKS.md)",
    )
    args = parser.parse_args()
    args.command = " ".join(["python -m scripts.bench", *sys.argv[1:]])
    with redis_for_bench() as redis_url:
        for name in args.scenarios or SCENARIOS:
            await SCENARIOS[name](args, redis_url)


if __name__ == "__main__":
    asyncio.run(main())
