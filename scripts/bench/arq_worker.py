"""The baseline of the `worker` benchmark: a plain arq worker doing per job what a callback
job does in the service (one upstream POST and one callback POST, with httpx), with as many
jobs at once as the service worker has slots. Run by the benchmark as
`arq scripts.bench.arq_worker.WorkerSettings` with BENCH_* variables set."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import httpx
from arq.connections import RedisSettings

QUEUE = os.environ.get("BENCH_ARQ_QUEUE", "bench:arq")


async def startup(ctx: dict[str, Any]) -> None:
    ctx["http"] = httpx.AsyncClient(timeout=30)


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["http"].aclose()


async def call_and_call_back(ctx: dict[str, Any], body: dict[str, Any], callback: str) -> None:
    http: httpx.AsyncClient = ctx["http"]
    answer = await http.post(os.environ["BENCH_UPSTREAM"] + "/v1/chat/completions", json=body)
    await http.post(callback, json={"status_code": answer.status_code, "body": answer.json()})


class WorkerSettings:
    functions: ClassVar[list[Any]] = [call_and_call_back]
    on_startup = startup
    on_shutdown = shutdown
    queue_name = QUEUE
    max_jobs = int(os.environ.get("BENCH_SLOTS", "64"))
    keep_result = 0
    redis_settings = RedisSettings.from_dsn(os.environ.get("BENCH_REDIS", "redis://127.0.0.1"))
