"""Scenario `streaming`: what a streaming put adds to each event over reading the mock's
stream directly. Direct and queued streams alternate; a TCP tap in front of the mock notes
when each event leaves it, so both are timed from the same point.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from typing import NamedTuple

from scripts.bench.blocking import CHAT, PUT, chat, put
from scripts.bench.lib import MockUpstream, Stack, report, summary_ms
from scripts.bench.rawhttp import Connection, Tap, post

STREAM_TOKENS = 50
STREAM_TTFT = 0.02
TOKEN_LATENCY = 0.01


class StreamRun(NamedTuple):
    first: float
    """Time to the first event, from sending the request."""
    latencies: list[float]
    """Per event: arrival at the client minus the moment its bytes left the tap."""
    gaps: list[float]
    """Between consecutive events' arrivals at the client."""


async def streaming(args: argparse.Namespace, redis_url: str) -> None:
    """A streaming put relaying the mock's SSE events, against reading them directly."""
    pairs = 5 if args.quick else 80
    with MockUpstream() as upstream:
        tap = Tap(upstream.port)
        await tap.start()
        stack = Stack(tap.url)
        await asyncio.to_thread(stack.start, redis_url)
        try:
            direct, queued = await _stream_pairs(tap, stack.api_port, pairs)
        finally:
            await asyncio.to_thread(stack.stop)
            await tap.stop()
    lat_d = [x for run in direct for x in run.latencies]
    lat_q = [x for run in queued for x in run.latencies]
    table = [
        "| measured | direct median / p99 ms | streaming put median / p99 ms "
        "| **added** median / p99 ms |",
        "|---|---|---|---|",
        _stream_row(
            "time to first event, from sending",
            [r.first for r in direct],
            [r.first for r in queued],
        ),
        _stream_row("**per-event latency**, mock → client", lat_d, lat_q),
        _stream_row(
            "gap between consecutive events",
            [x for run in direct for x in run.gaps],
            [x for run in queued for x in run.gaps],
        ),
    ]
    notes = [
        f"{pairs} direct and {pairs} queued streams, alternating, one at a time; each streams",
        f"{STREAM_TOKENS} tokens ({len(direct[0].latencies)} SSE events: role, tokens, finish, "
        f"`[DONE]`) with mock ttft {STREAM_TTFT * 1000:.0f} ms and "
        f"{TOKEN_LATENCY * 1000:.0f} ms per token.",
        "Per-event latency: a TCP tap in front of the mock notes when the end of each event",
        "leaves the mock (on its way to the bench when direct, to the worker when queued);",
        "the event's arrival at the client minus that moment is its latency. So the mock's",
        "own pacing (its sleeps overshoot and drift) cancels out, and the queued figure holds",
        "the whole relay: worker parse and publish, Redis, the API's hub, the API's response",
        "write and the client's read. Added = queued − direct of the same statistic. Time to",
        "first event also holds the put, the pickup and the worker's call to the upstream.",
        "Target: added per-event median under 2 ms.",
    ]
    report("streaming", args.command, table, notes)


def _stream_row(label: str, direct: list[float], queued: list[float]) -> str:
    d, q = summary_ms(direct), summary_ms(queued)
    return (
        f"| {label} | {d[0]:.2f} / {d[1]:.2f} | {q[0]:.2f} / {q[1]:.2f} "
        f"| **{q[0] - d[0]:+.2f}** / {q[1] - d[1]:+.2f} |"
    )


async def _stream_pairs(
    tap: Tap, api_port: int, pairs: int
) -> tuple[list[StreamRun], list[StreamRun]]:
    direct_conn = await Connection.open(tap.port)
    queued_conn = await Connection.open(api_port)
    runs: dict[str, list[StreamRun]] = {"direct": [], "queued": []}
    warmup = 3
    try:
        for n in range(pairs + warmup):
            for tag, conn in (("direct", direct_conn), ("queued", queued_conn)):
                run = await _stream_once(tap, conn, tag, f"stream {tag} {n}")
                if n >= warmup:
                    runs[tag].append(run)
                await asyncio.sleep(0.01)
    finally:
        await direct_conn.close()
        await queued_conn.close()
    return runs["direct"], runs["queued"]


async def _stream_once(tap: Tap, conn: Connection, tag: str, text: str) -> StreamRun:
    data = chat(text, ttft=STREAM_TTFT, token_latency=TOKEN_LATENCY, tokens=STREAM_TOKENS)
    if tag == "direct":
        raw = post(conn.port, CHAT, {**data, "stream": True})
    else:
        raw = post(conn.port, PUT, put(data, "streaming"))
    tap.seen.clear()
    sent = time.time()
    arrivals = [at async for at, _ in conn.events(raw)]
    left = tap.seen[:]
    if len(left) != len(arrivals):
        raise RuntimeError(f"{text}: {len(arrivals)} events arrived, {len(left)} left the mock")
    return StreamRun(
        first=arrivals[0] - sent,
        latencies=[at - gone for at, gone in zip(arrivals, left, strict=True)],
        gaps=[b - a for a, b in itertools.pairwise(arrivals)],
    )
