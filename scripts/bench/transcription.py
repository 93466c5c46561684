"""The API's and the worker's memory while a 20 MB audio file is transcribed through the
queue (a multipart put, blocking): the file goes in pieces to the store, the worker sends it
upstream as a multipart form."""

from __future__ import annotations

import argparse
import asyncio
import json

import httpx

from scripts.bench.batch import peak_rss, rss_mb
from scripts.bench.lib import MockUpstream, Stack, report


async def transcription(args: argparse.Namespace, redis_url: str) -> None:
    megabytes = 5 if args.quick else 20
    audio = b"\x00\x01" * (megabytes * 1024 * 1024 // 2)
    put = {
        "queue": "bench-audio",
        "endpoint": "/v1/audio/transcriptions",
        "level": 0,
        "response_mode": "blocking",
        "data": {"model": "whisper-1"},
    }
    with MockUpstream() as upstream:
        stack = Stack(upstream.url, concurrency=4)
        await asyncio.to_thread(stack.start, redis_url)
        try:
            worker_pid, api_pid = stack.processes[0].pid, stack.processes[-1].pid
            worker_before = rss_mb(worker_pid)
            worker_peak = worker_before
            async with httpx.AsyncClient(base_url=stack.api_url, timeout=120) as api:

                async def transcribe() -> None:
                    answer = await api.post(
                        "/v1/queue/put",
                        data={"job": json.dumps(put)},
                        files={"file": ("talk.wav", audio, "audio/wav")},
                    )
                    answer.raise_for_status()

                async def watch_worker() -> None:
                    nonlocal worker_peak
                    while True:
                        worker_peak = max(worker_peak, rss_mb(worker_pid))
                        await asyncio.sleep(0.02)

                watching = asyncio.create_task(watch_worker())
                api_before, api_peak = await peak_rss(api_pid, transcribe())
                watching.cancel()
        finally:
            await asyncio.to_thread(stack.stop)
    table = [
        f"| process (a {megabytes} MB file) | before MB | peak MB | growth MB |",
        "|---|--:|--:|--:|",
        f"| API | {api_before:.0f} | {api_peak:.0f} | {api_peak - api_before:+.0f} |",
        f"| worker | {worker_before:.0f} | {worker_peak:.0f} "
        f"| {worker_peak - worker_before:+.0f} |",
    ]
    notes = [
        "One API process, one worker, the mock upstream; VmRSS sampled every 20 ms. The API",
        "spools the upload to disk and stores it in 1 MiB pieces; the worker reads the whole",
        "file (at most 25 MB for audio) to send it upstream as a multipart form.",
    ]
    report("transcription", args.command, table, notes)
