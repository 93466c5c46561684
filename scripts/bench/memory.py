"""Scenario `memory`: the resident memory (RSS) of the API while streaming clients stop
reading, and of a worker whose upstream answers far more than a job may take.

    python -m scripts.bench memory [--before PATH]

API: 100 streaming puts of long streams whose clients send the request, read the response
headers and then nothing (a small receive buffer, so the kernel soon stops taking data for
them), against the same 100 clients reading normally. Worker: one job whose upstream answers
230 MiB in pieces (chunked, not SSE). With `--before PATH` (a checkout of the service before a
change, e.g. a worktree at commit 722a5be) every figure is measured on that code too:
its API and worker run with PYTHONPATH=PATH, everything else (the bench, the mock upstream,
Redis) is the same. RSS is read from /proc/<pid>/status: VmRSS sampled while it runs, and
VmHWM, the kernel's own high-water mark of the process (each measurement runs on freshly
started processes, so VmHWM is the peak of that measurement).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from scripts.bench.lib import ROOT, MockUpstream, Stack, report
from scripts.bench.memory_rig import (
    CHAT,
    FULL,
    PUT,
    QUEUE,
    QUICK,
    SAMPLE_S,
    SETTLE_S,
    Figures,
    LoggedStack,
    Sampler,
    Size,
    Tree,
    mib,
    own_redis,
    parse_head,
    status_kib,
)
from scripts.bench.memory_worker import BIG_PIECE, big_answer

SLOTS = 128
"""Worker slots: room for every stream at once."""
MODEL = "m" * 4000
"""The mock repeats the model name in every chunk: 4,000 characters make each event about
4.2 kB, so that a long stream is not millions of events (which this machine's two cores
would take minutes to relay)."""
RCVBUF = 4096
"""SO_RCVBUF of a client that does not read (the kernel doubles it)."""
TERMINAL = {"succeeded", "failed", "timeout", "cancelled"}


async def memory(args: argparse.Namespace, redis_url: str) -> None:
    """API RSS with streaming clients that stop reading; worker RSS with a huge answer."""
    size = QUICK if args.quick else FULL
    trees = _trees(args)
    results: dict[tuple[str, str], Figures] = {}
    async with own_redis() as redis:
        for tree in trees:
            for kind in ("stalled", "reading", "big"):
                print(f"memory: {kind} on {tree.describe()}", flush=True)
                load = os.getloadavg()[0]
                with tempfile.TemporaryDirectory(prefix="bench-memory-logs-") as logs:
                    stack = LoggedStack(
                        "",
                        concurrency=4 if kind == "big" else SLOTS,
                        env_extra=tree.env,
                        log_dir=Path(logs),
                        redis_log=redis.data_dir / "redis.log",
                    )
                    if kind == "big":
                        figures = await big_answer(redis.url, stack, size)
                    else:
                        reading = kind == "reading"
                        figures = await _streams(redis.url, stack, size, reading=reading)
                    said = stack.said()
                figures.notes.append(
                    f"load average {load:.1f} when it started"
                    + (f"; logged: {', '.join(said)}" if said else "; nothing of note logged")
                )
                results[(tree.label, kind)] = figures
                print(f"   {figures}", flush=True)
    _report(args, size, trees, results)


def _trees(args: argparse.Namespace) -> list[Tree]:
    """This checkout, and the one `--before` names."""
    trees = [Tree("now", ROOT)]
    before_path = getattr(args, "before", None)
    if before_path:
        trees.append(Tree("before", Path(before_path).resolve()))
    return trees


def _report(
    args: argparse.Namespace,
    size: Size,
    trees: list[Tree],
    results: dict[tuple[str, str], Figures],
) -> None:
    n = size.clients
    stream_mib = _stream_bytes(size) / 2**20
    titles = {
        "stalled": f"API, {n} streaming clients **not reading**",
        "reading": f"API, {n} streaming clients reading",
        "big": f"worker, one upstream answer of {size.big_bytes >> 20} MiB",
    }
    table = [
        "| process, load | code | before MiB | peak MiB (sampled / VmHWM) | end MiB | after MiB"
        " | peak − before | what became of the jobs |",
        "|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for kind in ("stalled", "reading", "big"):
        for tree in trees:
            f = results[(tree.label, kind)]
            grown = max(f.peak, f.hwm) - f.before
            per = f" ({grown / n / 1024:.1f} per client)" if kind != "big" else ""
            table.append(
                f"| {titles[kind]} | {tree.label} | {mib(f.before)} | {mib(f.peak)} /"
                f" {mib(f.hwm)} | {mib(f.end) if f.end is not None else '–'} | {mib(f.after)}"
                f" | **{mib(grown)}**{per} | {f.outcome} |"
            )
    notes = [
        f"Code: {'; '.join(tree.describe() for tree in trees)}; every process on 127.0.0.1,",
        "one API process and one worker (the API figures: the API's RSS; the worker figures:",
        "the worker's), freshly started for each row; Redis is a redis-server of the scenario's",
        "own. *before*: idle, after a warm-up put; *peak*: the highest VmRSS sampled every",
        f"{SAMPLE_S * 1000:.0f} ms / the kernel's VmHWM of the process; *end*: the non-reading",
        "clients still connected, every job ended; *after*: the clients gone (or the job",
        f"answered), {SETTLE_S:.0f} s later.",
        f"Streams: {n} streaming chat puts at once, each {size.tokens:,} tokens from the mock",
        f"(token latency 0; a {len(MODEL):,}-character model name, which the mock repeats in",
        f"every chunk, makes {stream_mib:.1f} MiB of SSE per stream); {SLOTS} worker slots.",
        f"A client that does not read sets SO_RCVBUF {RCVBUF} before connecting, sends its",
        "put, reads the response head (it comes with the first event) and then nothing, until",
        "every job ended (or the measurement's time ran out); then it closes. The reading",
        "clients read every byte. QUEUE_STREAM_CLIENT_BUFFER_BYTES and QUEUE_MAX_RESULT_BYTES",
        "at their defaults (1 MiB, 32 MiB) where the code has them.",
        "Worker: one blocking put whose upstream (a tiny asyncio server of the scenario's own)",
        f"answers 200 with {size.big_bytes >> 20} MiB of JSON-looking bytes in {BIG_PIECE >> 20}"
        " MiB pieces, chunked",
        "(no Content-Length, not SSE); *sent* is how much of it the upstream got to write",
        "before the worker closed the connection.",
    ]
    for tree in trees:
        for kind in ("stalled", "reading", "big"):
            said = "; ".join(results[(tree.label, kind)].notes)
            notes.append(f"{titles[kind]} ({tree.label}): {said}.")
    report("memory", args.command, table, notes)


def _stream_bytes(size: Size) -> int:
    """About how many bytes of SSE one stream is (each token's event carries the model)."""
    return size.tokens * (len(MODEL) + 210)


def _stream_put(n: int, size: Size) -> bytes:
    data = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"memory {n}"}],
        "stream": True,
        "mock": {"tokens": size.tokens, "token_latency": 0, "ttft": 0.05},
    }
    body = {
        "queue": QUEUE,
        "endpoint": CHAT,
        "level": 0,
        "data": data,
        "response_mode": "streaming",
        "timeout": 600,
    }
    return _request(PUT, body)


def _request(path: str, body: dict[str, Any]) -> bytes:
    data = orjson.dumps(body)
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + data


@dataclass
class Stalled:
    sock: socket.socket
    status: int
    task_id: str


async def _open_stalled(port: int, raw: bytes) -> Stalled:
    """Send a streaming put and read its response head, and no more."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, raw)
        head = b""
        while b"\r\n\r\n" not in head:
            piece = await loop.sock_recv(sock, 1024)
            if not piece:
                raise RuntimeError(f"the API closed a stream before its head: {head[:200]!r}")
            head += piece
    except BaseException:
        sock.close()
        raise
    status, headers = parse_head(head)
    return Stalled(sock, status, headers.get("x-task-id", ""))


async def _read_stream(port: int, raw: bytes) -> tuple[int, str, int]:
    """Send a streaming put and read all of it: (status, task id, bytes of body read)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:
        writer.write(raw)
        status, headers = parse_head(await reader.readuntil(b"\r\n\r\n"))
        total = 0
        while piece := await reader.read(1 << 18):
            total += len(piece)
        return status, headers.get("x-task-id", ""), total
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _statuses(api_url: str, task_ids: list[str], until: float) -> Counter[str]:
    """The tasks' statuses once all ended (or `until` passed: those open then, as they are)."""
    statuses: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=30.0) as client:
        while True:
            open_ids = [t for t in task_ids if statuses.get(t) not in TERMINAL]
            if not open_ids or time.monotonic() > until:
                break
            for task_id in open_ids:
                response = await client.get(f"{api_url}/v1/queue/{task_id}")
                data = response.json().get("data") if response.status_code == 200 else None
                statuses[task_id] = (data or {}).get("status") or f"HTTP {response.status_code}"
            await asyncio.sleep(0.5)
    return Counter(statuses.get(t, "?") for t in task_ids)


async def _warm_up(port: int) -> None:
    """One short stream, read through: the API's relay path is loaded before `before`."""
    data = {
        "model": "m",
        "messages": [{"role": "user", "content": "warm up"}],
        "stream": True,
        "mock": {"tokens": 20, "token_latency": 0},
    }
    body = {"queue": QUEUE, "endpoint": CHAT, "level": 0, "data": data}
    status, _, _ = await _read_stream(port, _request(PUT, {**body, "response_mode": "streaming"}))
    if status != 200:
        raise RuntimeError(f"the warm-up stream answered {status}")


async def _streams(redis_url: str, stack: Stack, size: Size, *, reading: bool) -> Figures:
    figures = Figures()
    with MockUpstream() as upstream:
        stack.upstream_url = upstream.url
        await asyncio.to_thread(stack.start, redis_url)
        api = stack.processes[-1].pid
        try:
            await _warm_up(stack.api_port)
            await asyncio.sleep(1.0)
            figures.before = status_kib(api)[0]
            started = time.monotonic()
            until = started + size.limit_s
            async with Sampler(api).running() as sampler:
                if reading:
                    await _reading(figures, stack, size, until)
                else:
                    await _stalled(figures, stack, size, until)
            figures.seconds = time.monotonic() - started
            figures.peak = sampler.peak
            figures.hwm = status_kib(api)[1]
            await asyncio.sleep(SETTLE_S)
            figures.after = status_kib(api)[0]
        finally:
            await asyncio.to_thread(stack.stop)
    return figures


async def _stalled(figures: Figures, stack: Stack, size: Size, until: float) -> None:
    port = stack.api_port
    opened = await asyncio.gather(
        *(_open_stalled(port, _stream_put(n, size)) for n in range(size.clients)),
        return_exceptions=True,
    )
    clients = [c for c in opened if isinstance(c, Stalled)]
    try:
        failed = [c for c in opened if not isinstance(c, Stalled)]
        if failed:
            figures.notes.append(f"{len(failed)} streams failed to open: {failed[0]!r}")
        heads = Counter(c.status for c in clients)
        statuses = await _statuses(stack.api_url, [c.task_id for c in clients], until)
        figures.end = status_kib(stack.processes[-1].pid)[0]
        api_side, client_side = await asyncio.to_thread(_socket_queues, port)
        figures.outcome = _listed(statuses)
        took = time.monotonic() - (until - size.limit_s)
        ended = all(status in TERMINAL for status in statuses)
        figures.notes.append(
            f"response heads {_listed(heads)}; "
            + (f"every job ended within {took:.1f} s" if ended else f"jobs open after {took:.0f} s")
            + f"; then the kernel held {api_side / 2**20:,.1f} MiB in the API's send queues"
            f" and {client_side / 2**20:,.1f} MiB in the clients' receive queues (not in any RSS)"
        )
    finally:
        for client in clients:
            client.sock.close()


def _socket_queues(port: int) -> tuple[int, int]:
    """Bytes the kernel holds for the API's connections on `port`: the API's sockets' send
    queues and the clients' receive queues (`ss`; zeros when it is not there)."""

    def total(column: int, side: str) -> int:
        try:
            listed = subprocess.run(
                ["ss", "-tnH", f"( {side} = :{port} )"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
        except OSError:
            return 0
        return sum(int(line.split()[column]) for line in listed.splitlines() if line.strip())

    return total(2, "sport"), total(1, "dport")


async def _reading(figures: Figures, stack: Stack, size: Size, until: float) -> None:
    port = stack.api_port
    async with asyncio.timeout(max(until - time.monotonic(), 1.0)):
        reads = await asyncio.gather(
            *(_read_stream(port, _stream_put(n, size)) for n in range(size.clients))
        )
    statuses = await _statuses(stack.api_url, [task for _, task, _ in reads], until)
    figures.outcome = _listed(statuses)
    total = sum(length for _, _, length in reads)
    figures.notes.append(
        f"response heads {_listed(Counter(status for status, _, _ in reads))};"
        f" {total / 2**20:,.0f} MiB read in all ({total / len(reads) / 2**20:.1f} MiB per"
        " stream)"
    )


def _listed(counts: Counter[Any]) -> str:
    return ", ".join(f"{n} {value}" for value, n in counts.most_common())
