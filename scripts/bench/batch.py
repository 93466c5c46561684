"""Batches against one-by-one puts, and the API's memory while a 200 MB file goes in and out.

- jobs/s of an N-line batch (upload, create, until `completed`) against the same N jobs put
  one by one through the put API (callback mode, 16 puts under way), in the same run, the
  same stack (one API process, one worker with 64 slots, the mock upstream);
- the API process's resident memory while a 200 MB batch file is uploaded and while it is
  downloaded again, sampled every 20 ms, against its size before.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from scripts.bench.lib import ROOT, MockUpstream, Stack, report

CHAT = "/v1/chat/completions"


def body(n: int) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": f"job {n}"}]}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def peak_rss(pid: int, work: Awaitable[Any]) -> tuple[float, float]:
    """(RSS before, highest RSS while `work` runs), in MB."""
    before = peak = rss_mb(pid)
    task = asyncio.ensure_future(work)
    while not task.done():
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(0.02)
    await task
    return before, max(peak, rss_mb(pid))


async def until(check: Callable[[], Awaitable[bool]], seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while not await check():  # noqa: ASYNC110  (polls another process)
            await asyncio.sleep(0.2)


async def one_by_one(api: httpx.AsyncClient, jobs: int, callback_url: str) -> float:
    """Seconds from the first put until every job succeeded."""
    started = time.monotonic()
    numbers = iter(range(jobs))

    async def putter() -> None:
        for n in numbers:
            put = {"queue": "bench-one", "endpoint": CHAT, "level": 1, "data": body(n)}
            response = await api.post("/v1/queue/put", json=put | {"callback_url": callback_url})
            response.raise_for_status()

    await asyncio.gather(*(putter() for _ in range(16)))

    async def finished() -> bool:
        stats = (await api.get("/v1/queue/bench-one/stats")).json()["data"]
        return int(stats["totals"].get("succeeded", 0)) >= jobs

    await until(finished, 600)
    return time.monotonic() - started


async def as_batch(api: httpx.AsyncClient, jobs: int, folder: Path) -> float:
    """Seconds from uploading the batch file until the batch completed."""
    path = folder / "bench-batch.jsonl"
    lines = (
        {"custom_id": f"r{n}", "method": "POST", "url": CHAT, "body": body(n)} for n in range(jobs)
    )
    await asyncio.to_thread(write_jsonl, path, lines)
    started = time.monotonic()
    with path.open("rb") as upload:
        uploaded = await api.post(
            "/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", upload)}
        )
    uploaded.raise_for_status()
    created = await api.post(
        "/v1/batches",
        json={
            "input_file_id": uploaded.json()["id"],
            "endpoint": CHAT,
            "completion_window": "24h",
            "metadata": {"queue": "bench-batch"},
        },
    )
    created.raise_for_status()
    batch_id = created.json()["id"]

    async def completed() -> bool:
        status = (await api.get(f"/v1/batches/{batch_id}")).json()["status"]
        if status in ("failed", "expired", "cancelled"):
            raise RuntimeError(f"the batch ended {status}")
        return bool(status == "completed")

    await until(completed, 600)
    return time.monotonic() - started


def write_jsonl(path: Path, lines: Iterable[dict[str, Any]]) -> int:
    """Write JSON lines; the file's size in bytes."""
    size = 0
    with path.open("wb") as file:
        for line in lines:
            size += file.write(orjson.dumps(line) + b"\n")
    return size


def big_lines(megabytes: int) -> Iterator[dict[str, Any]]:
    data = {"model": "m", "messages": [{"role": "user", "content": "x" * 3800}]}
    for n in range(megabytes * 1024 * 1024 // 3900):
        yield {"custom_id": f"r{n}", "method": "POST", "url": CHAT, "body": data}


async def upload_and_download(
    api: httpx.AsyncClient, pid: int, path: Path, size_bytes: int
) -> list[str]:
    async def upload() -> str:
        with path.open("rb") as file:
            answer = await api.post(
                "/v1/files", data={"purpose": "batch"}, files={"file": ("big.jsonl", file)}
            )
        answer.raise_for_status()
        file_id: str = answer.json()["id"]
        return file_id

    uploading = asyncio.ensure_future(upload())
    before_up, peak_up = await peak_rss(pid, uploading)
    file_id = uploading.result()

    async def download() -> None:
        async with api.stream("GET", f"/v1/files/{file_id}/content") as response:
            async for _ in response.aiter_raw():
                pass

    before_down, peak_down = await peak_rss(pid, download())
    size = size_bytes / 1024 / 1024
    return [
        f"| upload of a {size:.0f} MB file | {before_up:.0f} | {peak_up:.0f} "
        f"| {peak_up - before_up:+.0f} |",
        f"| download of it | {before_down:.0f} | {peak_down:.0f} "
        f"| {peak_down - before_down:+.0f} |",
    ]


async def batch(args: argparse.Namespace, redis_url: str) -> None:
    jobs = 1_000 if args.quick else 10_000
    megabytes = 20 if args.quick else 200
    folder = ROOT / ".queue-service" / "bench-batch"
    folder.mkdir(parents=True, exist_ok=True)
    with MockUpstream() as upstream:
        extra = {"QUEUE_MAX_FILE_BYTES": str(300 * 1024 * 1024)}
        stack = Stack(upstream.url, concurrency=64, env_extra=extra)
        await asyncio.to_thread(stack.start, redis_url)
        try:
            timeout = httpx.Timeout(60.0)
            async with httpx.AsyncClient(base_url=stack.api_url, timeout=timeout) as api:
                alone = await one_by_one(api, jobs, f"{upstream.url}/_mock/callbacks")
                batched = await as_batch(api, jobs, folder)
                path = folder / "big.jsonl"
                size = await asyncio.to_thread(write_jsonl, path, big_lines(megabytes))
                memory = await upload_and_download(api, stack.processes[-1].pid, path, size)
        finally:
            await asyncio.to_thread(stack.stop)
            for leftover in folder.glob("*.jsonl"):
                leftover.unlink()
    table = [
        "| run | jobs | seconds | jobs/s |",
        "|---|--:|--:|--:|",
        f"| baseline: one by one (put API, callbacks) | {jobs} | {alone:.1f} "
        f"| {jobs / alone:.0f} |",
        f"| one batch (upload, create, until completed) | {jobs} | {batched:.1f} "
        f"| {jobs / batched:.0f} |",
        f"| batch ÷ baseline | | | {alone / batched:.2f}× |",
        "",
        "| API process, resident memory | before MB | peak MB | growth MB |",
        "|---|--:|--:|--:|",
        *memory,
    ]
    notes = [
        "One API process, one worker (64 slots), the mock upstream, each its own process. The",
        "baseline's jobs also call back (to the mock's inbox); the batch's lines do not. Memory",
        "is VmRSS of the API process sampled every 20 ms. Target: batch ≥ 0.9× the baseline,",
        "and under 100 MB growth while a 200 MB file goes in and out.",
    ]
    report("batch", args.command, table, notes)
