"""Scenario `blocking`: what a blocking put adds over calling the mock upstream directly.

The very same chat request body goes to the mock directly and, wrapped in a put, through the
API; direct and queued calls alternate so that both see the same noise on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from typing import Any, NamedTuple

from scripts.bench.lib import CpuMeter, MockUpstream, Stack, report, summary_ms
from scripts.bench.rawhttp import Connection, post

QUEUE = "bench-latency"
CHAT = "/v1/chat/completions"
PUT = "/v1/queue/put"

ONE_TTFT = 0.02
TOKENS = 20
MANY_CLIENTS = 100
MANY_TTFT = 1.0
SLOTS = 128
"""Worker slots (QUEUE_CONCURRENCY): room for every one of the MANY_CLIENTS calls."""


def chat(tag: str, **mock: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": tag}], "mock": mock}


def put(data: dict[str, Any], mode: str) -> dict[str, Any]:
    return {"queue": QUEUE, "endpoint": CHAT, "level": 0, "data": data, "response_mode": mode}


class Phase(NamedTuple):
    direct: list[float]
    queued: list[float]
    failed: Counter[int]
    """Status codes of the calls that did not answer 200 with a completion."""
    cpu: dict[str, float]
    """CPU seconds per queued call, by process."""


async def blocking(args: argparse.Namespace, redis_url: str) -> None:
    """A blocking put against a direct call of the mock, at 1 and at 100 clients."""
    pairs = 40 if args.quick else 600
    rounds, per_block = (1, 2) if args.quick else (4, 3)
    with MockUpstream() as upstream:
        stack = Stack(upstream.url, concurrency=SLOTS)
        await asyncio.to_thread(stack.start, redis_url)
        meter = CpuMeter({"API": stack.processes[-1].pid, "worker": stack.processes[0].pid})
        try:
            one = await _one_client(upstream.port, stack.api_port, pairs, meter)
            many = await _many_clients(upstream.port, stack.api_port, rounds, per_block, meter)
        finally:
            await asyncio.to_thread(stack.stop)
    table = [
        "| clients | direct median / p99 ms | blocking put median / p99 ms "
        "| **added** median / p99 ms | ratio of medians | CPU per queued call |",
        "|---|---|---|---|---|---|",
        _row("1", one),
        _row(str(MANY_CLIENTS), many),
    ]
    notes = [
        f"The same chat request body both ways (`mock`: {TOKENS} tokens, not streamed).",
        f"1 client: {pairs} direct and {pairs} queued calls, alternating, one at a time, mock",
        f"ttft {ONE_TTFT * 1000:.0f} ms. {MANY_CLIENTS} clients: each loops on its own "
        "keep-alive connection, starts",
        f"staggered over one ttft; mock ttft {MANY_TTFT * 1000:.0f} ms, so about "
        f"{MANY_CLIENTS / MANY_TTFT:.0f} calls/s; {rounds} rounds of {per_block} direct calls "
        f"per client, then {per_block} queued. Added = queued − direct of the same",
        "statistic. CPU per queued call: the API's and the worker's CPU time over the phase",
        f"÷ queued calls. One API process, one worker with {SLOTS} slots (QUEUE_CONCURRENCY;",
        "the default 16 would measure waiting for a slot), the mock, Redis and the client",
        "share the machine's 2 cores; the client is raw asyncio HTTP/1.1 on keep-alive",
        "connections (`scripts/bench/rawhttp.py`). Target: added median under 3 ms at 1 client.",
        f"At {MANY_CLIENTS / MANY_TTFT:.0f} calls/s the worker's CPU per call comes to "
        f"{many.cpu['worker'] * MANY_CLIENTS / MANY_TTFT:.0%} of a core.",
        *_failures(one, "1 client"),
        *_failures(many, f"{MANY_CLIENTS} clients"),
    ]
    report("blocking", args.command, table, notes)


def _row(clients: str, phase: Phase) -> str:
    d, q = summary_ms(phase.direct), summary_ms(phase.queued)
    cpu = " + ".join(f"{name} {seconds * 1000:.2f} ms" for name, seconds in phase.cpu.items())
    return (
        f"| {clients} | {d[0]:.2f} / {d[1]:.2f} | {q[0]:.2f} / {q[1]:.2f} "
        f"| **{q[0] - d[0]:+.2f}** / {q[1] - d[1]:+.2f} | {q[0] / d[0]:.3f}× | {cpu} |"
    )


def _failures(phase: Phase, label: str) -> list[str]:
    if not phase.failed:
        return []
    codes = ", ".join(f"{count} × {status}" for status, count in phase.failed.most_common())
    return [f"{label}: calls that failed, left out of the figures: {codes}."]


async def _call(conn: Connection, raw: bytes, failed: Counter[int]) -> float | None:
    """The call's latency, or None (its status counted in `failed`) when it failed."""
    started = time.perf_counter()
    reply = await conn.request(raw)
    elapsed = time.perf_counter() - started
    if reply.status != 200 or b"choices" not in reply.body:
        failed[reply.status] += 1
        return None
    return elapsed


async def _one_client(upstream_port: int, api_port: int, pairs: int, meter: CpuMeter) -> Phase:
    direct_conn = await Connection.open(upstream_port)
    queued_conn = await Connection.open(api_port)
    direct: list[float | None] = []
    queued: list[float | None] = []
    failed: Counter[int] = Counter()
    warmup = 20
    try:
        for n in range(pairs + warmup):
            if n == warmup:
                meter.start()
            data = chat(f"one {n}", ttft=ONE_TTFT, tokens=TOKENS)
            d = await _call(direct_conn, post(upstream_port, CHAT, data), failed)
            q = await _call(queued_conn, post(api_port, PUT, put(data, "blocking")), failed)
            if n >= warmup:
                direct.append(d)
                queued.append(q)
    finally:
        await direct_conn.close()
        await queued_conn.close()
    return _phase(direct, queued, failed, meter)


def _phase(
    direct: list[float | None], queued: list[float | None], failed: Counter[int], meter: CpuMeter
) -> Phase:
    used = meter.used()
    cpu = {name: seconds / len(queued) for name, seconds in used.items()}
    return Phase(
        [x for x in direct if x is not None], [x for x in queued if x is not None], failed, cpu
    )


async def _many_clients(
    upstream_port: int, api_port: int, rounds: int, per_block: int, meter: CpuMeter
) -> Phase:
    direct_conns = [await Connection.open(upstream_port) for _ in range(MANY_CLIENTS)]
    queued_conns = [await Connection.open(api_port) for _ in range(MANY_CLIENTS)]
    direct: list[float | None] = []
    queued: list[float | None] = []
    failed: Counter[int] = Counter()
    data = chat("many", ttft=MANY_TTFT, tokens=TOKENS)
    direct_raw = post(upstream_port, CHAT, data)
    queued_raw = post(api_port, PUT, put(data, "blocking"))
    try:
        await _block(direct_conns, direct_raw, 1, failed)  # warm-up
        await _block(queued_conns, queued_raw, 1, failed)
        failed.clear()
        meter.start()
        for _ in range(rounds):
            direct += await _block(direct_conns, direct_raw, per_block, failed)
            queued += await _block(queued_conns, queued_raw, per_block, failed)
    finally:
        for conn in direct_conns + queued_conns:
            await conn.close()
    return _phase(direct, queued, failed, meter)


async def _block(
    conns: list[Connection], raw: bytes, calls: int, failed: Counter[int]
) -> list[float | None]:
    """Each connection makes `calls` calls in a row; starts are spread over one ttft."""

    async def client(conn: Connection) -> list[float | None]:
        await asyncio.sleep(random.uniform(0, MANY_TTFT))
        return [await _call(conn, raw, failed) for _ in range(calls)]

    results = await asyncio.gather(*(client(conn) for conn in conns))
    return [sample for samples in results for sample in samples]
