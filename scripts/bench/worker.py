"""Worker throughput: a backlog of callback jobs against a no-op upstream, run by one service
worker and, as the baseline in the same run, by a plain arq worker doing the same two HTTP
calls per job (`scripts/bench/arq_worker.py`). Jobs per second and worker CPU per job."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import time
import uuid
from typing import Any

import httpx
from arq.connections import RedisSettings, create_pool

from scripts.bench.lib import BIN, MockUpstream, Stack, cpu_seconds, put_all, put_request, report

QUEUE = "bench-worker"
SLOTS = 64


def _chat(n: int) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": f"job {n}"}],
        "mock": {"tokens": 1},
    }


async def _drained(
    upstream: MockUpstream, jobs: int, pid: int, within: float = 300.0
) -> tuple[float, float]:
    """Seconds and the worker's CPU seconds from the first callback in the mock's inbox to
    the `jobs`-th: the worker's steady pace, without its start-up."""
    deadline = time.monotonic() + within
    first: tuple[float, float] | None = None
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            count = len((await client.get(f"{upstream.url}/_mock/callbacks")).json())
            if count and first is None:
                first = time.monotonic(), cpu_seconds(pid)
            if count >= jobs and first is not None:
                return time.monotonic() - first[0], cpu_seconds(pid) - first[1]
            await asyncio.sleep(0.02)
    raise RuntimeError(f"fewer than {jobs} callbacks within {within:.0f}s")


def _profile(pid: int, profile: str | None, name: str) -> subprocess.Popen[bytes] | None:
    """With `--profile DIR`: py-spy samples the worker `pid` while it drains the backlog,
    writing its folded stacks to DIR/<name>.txt (flamegraph.pl or speedscope draw them)."""
    if profile is None:
        return None
    command = [str(BIN / "py-spy"), "record", "--rate", "250", "--nonblocking", "--pid"]
    command += [str(pid), "--format", "raw", "-o", f"{profile}/{name}.txt"]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


async def _service(jobs: int, redis_url: str, profile: str | None) -> tuple[float, float]:
    """Seconds and worker CPU seconds to run a backlog of `jobs` through one worker."""
    with MockUpstream() as upstream:
        stack = Stack(upstream.url, workers=0, concurrency=SLOTS)
        await asyncio.to_thread(stack.start, redis_url)
        try:
            callback = f"{upstream.url}/_mock/callbacks"
            puts = [
                (
                    str(n),
                    put_request(
                        stack.api_port,
                        {
                            "queue": QUEUE,
                            "endpoint": "/v1/chat/completions",
                            "level": 1,
                            "callback_url": callback,
                            "data": _chat(n),
                        },
                    ),
                )
                for n in range(jobs)
            ]
            await put_all(stack.api_port, puts, in_flight=64)
            env = {**stack.env(redis_url), "QUEUE_ONLINE_RESERVED_SLOTS": "0"}
            command = [str(BIN / "queue-service"), "worker"]
            worker = subprocess.Popen(command, stdin=subprocess.DEVNULL, env=env)
            spy = _profile(worker.pid, profile, "service")
            stack.processes.insert(0, worker)
            drained = await _drained(upstream, jobs, worker.pid)
            _stop(spy)
            return drained
        finally:
            await asyncio.to_thread(stack.stop)


def _stop(spy: subprocess.Popen[bytes] | None) -> None:
    """py-spy writes what it sampled on SIGINT."""
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)


async def _arq(jobs: int, redis_url: str, profile: str | None) -> tuple[float, float]:
    """The same backlog through a plain arq worker."""
    queue = f"bench:arq:{uuid.uuid4().hex[:8]}"
    with MockUpstream() as upstream:
        pool = await create_pool(RedisSettings.from_dsn(redis_url))
        try:
            callback = f"{upstream.url}/_mock/callbacks"
            for n in range(jobs):
                await pool.enqueue_job("call_and_call_back", _chat(n), callback, _queue_name=queue)
            env = {
                **os.environ,
                "BENCH_ARQ_QUEUE": queue,
                "BENCH_UPSTREAM": upstream.url,
                "BENCH_SLOTS": str(SLOTS),
                "BENCH_REDIS": redis_url,
            }
            command = [str(BIN / "arq"), "scripts.bench.arq_worker.WorkerSettings"]
            worker = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            spy = _profile(worker.pid, profile, "arq")
            try:
                return await _drained(upstream, jobs, worker.pid)
            finally:
                _stop(spy)
                worker.terminate()
                await asyncio.to_thread(worker.wait, 30)
        finally:
            async for key in pool.scan_iter(match="arq:*"):
                await pool.delete(key)
            await pool.delete(queue)
            await pool.aclose()


async def worker(args: argparse.Namespace, redis_url: str) -> None:
    jobs = 600 if args.quick else 3000
    rounds = 1 if args.quick else 2
    rows: dict[str, list[tuple[float, float]]] = {"arq": [], "service": []}
    for _ in range(rounds):
        rows["arq"].append(await _arq(jobs, redis_url, args.profile))
        rows["service"].append(await _service(jobs, redis_url, args.profile))
    best = {name: min(runs) for name, runs in rows.items()}
    arq_rate = (jobs - 1) / best["arq"][0]
    service_rate = (jobs - 1) / best["service"][0]
    arq_cpu, service_cpu = best["arq"][1] / jobs * 1000, best["service"][1] / jobs * 1000
    table = [
        f"| worker ({SLOTS} at once, {jobs} queued callback jobs) | jobs/s | worker CPU ms/job |",
        "|---|--:|--:|",
        f"| baseline: plain arq worker, httpx | {arq_rate:,.0f} | {arq_cpu:.2f} |",
        f"| **queue-service worker** | {service_rate:,.0f} | {service_cpu:.2f} |",
        f"| **service ÷ arq** | **{service_rate / arq_rate:.2f}×** | |",
    ]
    notes = [
        "The backlog is put first, then the worker starts; timed from its start to the mock's",
        f"inbox holding every callback (best of {rounds} rounds each, alternating). The mock",
        "answers at once (1 token), so the figure is the worker's own cost per job: the arq",
        "worker makes the same upstream POST and callback POST with httpx. The service worker",
        "also stores each outcome, acks its entry and settles the callback in Redis.",
        "Goal (issue 15): at least 3× the arq worker and 1,500 jobs/s. Where the CPU goes:",
        "`python -m scripts.bench worker --profile DIR` samples both workers with py-spy;",
        "`python -m scripts.bench.flame_top DIR/service.txt` lists the heaviest frames.",
    ]
    report("worker", args.command, table, notes)
