"""Scenario `held`: callback puts while one API process holds N blocking requests open.

The held requests come from a separate process (`python -m scripts.bench.held --hold PORT`,
told on stdin how many to open) on raw sockets, so that the client holding them costs the
measuring client nothing. No worker runs: every blocking job stays queued and its request
stays open on the API's one pub/sub hub, which is what the scenario measures.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from typing import Any

from redis.asyncio import Redis

from queue_service.store.keys import Keys
from scripts.bench.batch import rss_mb
from scripts.bench.lib import ROOT, MockUpstream, Stack, report, summary_ms
from scripts.bench.rawhttp import Connection, post, raise_open_files_limit

QUEUE = "bench-held"
PUT_QUEUE = "bench-held-puts"
"""The measured callback puts go to a queue of their own: QUEUE's stream counts held jobs."""
PUT = "/v1/queue/put"
PUT_CLIENTS = 10
BATCH = 50
BACKLOG = 100
"""Held requests are opened BATCH at a time while fewer than BACKLOG of those opened are
not yet in the stream: as fast as the API takes them in, with little waiting, so that the
probe sees the API's own pauses rather than a queue of arrivals."""
PROBE_INTERVAL = 0.02


def held_put() -> dict[str, Any]:
    data = {"model": "m", "messages": [{"role": "user", "content": "hold"}], "mock": {"hang": True}}
    return {
        "queue": QUEUE,
        "endpoint": "/v1/chat/completions",
        "level": 0,
        "data": data,
        "response_mode": "blocking",
        "timeout": 3600,
    }


def callback_put(n: int, callback_url: str) -> dict[str, Any]:
    data = {"model": "m", "messages": [{"role": "user", "content": f"put {n}"}]}
    return {
        "queue": PUT_QUEUE,
        "endpoint": "/v1/chat/completions",
        "level": 0,
        "data": data,
        "callback_url": callback_url,
    }


async def held(args: argparse.Namespace, redis_url: str) -> None:
    """Callback put latency with nothing held, then with N blocking requests held."""
    count = 1000 if args.quick else 10_000
    puts = 200 if args.quick else 1000
    raise_open_files_limit()  # the API process inherits it
    with MockUpstream() as upstream:
        stack = Stack(upstream.url, workers=0)
        await asyncio.to_thread(stack.start, redis_url)
        redis = Redis.from_url(redis_url)
        holding: Holding | None = None
        try:
            callback_url = f"{upstream.url}/_mock/callbacks"
            idle = await _puts(stack.api_port, puts, callback_url, "idle")
            api_pid = stack.processes[-1].pid
            rss_idle = rss_mb(api_pid)
            holding = await _hold(stack, redis, count, callback_url)
            rss_held = rss_mb(api_pid)
            busy = await _puts(stack.api_port, puts, callback_url, "held")
            released = await _release(holding, stack, redis)
        finally:
            if holding is not None and holding.process.poll() is None:
                holding.process.kill()
            await redis.aclose()
            await asyncio.to_thread(stack.stop)
    _report(args, count, puts, idle, busy, holding, released, (rss_idle, rss_held))


def _report(
    args: argparse.Namespace,
    count: int,
    puts: int,
    idle: list[float],
    busy: list[float],
    holding: Holding,
    released: float,
    rss: tuple[float, float],
) -> None:
    i, b, r = summary_ms(idle), summary_ms(busy), summary_ms(holding.probe)
    table = [
        "| callback puts | median ms | p99 ms | max ms |",
        "|---|---|---|---|",
        f"| baseline: nothing held | {i[0]:.2f} | {i[1]:.2f} | {max(idle) * 1000:.2f} |",
        f"| **while {count:,} blocking requests are held** | **{b[0]:.2f}** | **{b[1]:.2f}** "
        f"| {max(busy) * 1000:.2f} |",
        f"| held ÷ baseline | {b[0] / i[0]:.2f}× | {b[1] / i[1]:.2f}× | |",
        f"| probe, one at a time, while the {count:,} arrive | {r[0]:.2f} "
        f"| {r[1]:.2f} | {max(holding.probe) * 1000:.2f} |",
        "",
        "| the API process | RSS MiB |",
        "|---|--:|",
        f"| idle (after the baseline puts) | {rss[0]:.0f} |",
        f"| **holding {count:,} blocking requests** | **{rss[1]:.0f}** "
        f"({(rss[1] - rss[0]) * 1024 / count:.1f} KiB a request) |",
    ]
    notes = [
        f"{puts} callback puts from {PUT_CLIENTS} concurrent keep-alive connections, first with",
        f"nothing held, then while one API process holds {count:,} blocking puts. Checked",
        f"before measuring: {holding.established:,} connections to the API established at "
        f"both ends, {holding.channels:,} task",
        f"channels subscribed by the API's hub, all {count:,} jobs in the stream, "
        f"{holding.answered} answered early.",
        "No worker runs, so every blocking job stays queued and its request stays open.",
        "The held requests come from a separate process on raw sockets, opened as fast as",
        f"the API takes them in (at most {BACKLOG} not yet in the stream): "
        f"{count / holding.ramp:.0f}/s, {holding.ramp:.1f} s in all.",
        f"Meanwhile a probe sent one callback put every {PROBE_INTERVAL * 1000:.0f} ms "
        f"({len(holding.probe)} puts).",
        "Once the held requests were closed, the API cancelled their jobs and dropped their",
        f"subscriptions in {released:.1f} s.",
        "bella-queue published p99 656 ms for this; target: p99 under 200 ms.",
    ]
    report("held", args.command, table, notes)


async def _puts(port: int, count: int, callback_url: str, tag: str) -> list[float]:
    """`count` callback puts over PUT_CLIENTS connections; each one's latency."""
    conns = [await Connection.open(port) for _ in range(PUT_CLIENTS)]
    samples: list[float] = []

    async def client(conn: Connection, first: int) -> None:
        for n in range(first, count, PUT_CLIENTS):
            raw = post(port, PUT, callback_put(n, callback_url))
            started = time.perf_counter()
            reply = await conn.request(raw)
            samples.append(time.perf_counter() - started)
            if reply.status != 200:
                raise RuntimeError(f"{tag} put failed: {reply.status} {reply.body[:200]!r}")

    try:
        await asyncio.gather(*(client(conn, i) for i, conn in enumerate(conns)))
    finally:
        for conn in conns:
            await conn.close()
    return samples


class Holding:
    """The holder process and what was checked once it held its requests."""

    def __init__(self, process: subprocess.Popen[str], ramp: float) -> None:
        self.process = process
        self.ramp = ramp
        self.established = 0
        self.probe: list[float] = []
        """Callback put latencies while the held requests were being opened."""
        self.channels = 0
        self.answered = 0


async def _hold(stack: Stack, redis: Redis, count: int, callback_url: str) -> Holding:
    """Have a holder process open `count` blocking puts; wait until the API holds them all.

    Meanwhile a probe sends one callback put at a time, to see the API's pauses.
    """
    command = [sys.executable, "-m", "scripts.bench.held", "--hold", str(stack.api_port)]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    holding = Holding(process, 0.0)
    started = time.perf_counter()
    ramped = asyncio.Event()
    probe = asyncio.create_task(_probe(stack.api_port, callback_url, ramped))
    try:
        await _ramp(holding, stack, redis, count)
    finally:
        ramped.set()
        holding.probe = await probe
    holding.ramp = time.perf_counter() - started
    holding.established = established_connections(stack.api_port)
    return holding


async def _ramp(holding: Holding, stack: Stack, redis: Redis, count: int) -> None:
    """Open held requests BATCH at a time, whenever fewer than BACKLOG wait for the API."""
    keys = Keys(stack.prefix)
    pattern, stream = keys.task_channel(QUEUE, "*"), keys.stream(QUEUE, 0)
    opened = 0
    deadline = time.perf_counter() + 180
    while (queued := await redis.xlen(stream)) < count:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the API took in only {queued} of {count} held requests")
        if opened < count and opened - queued < BACKLOG:
            wanted = min(BATCH, count - opened)
            reply = await asyncio.to_thread(_tell, holding.process, f"open {wanted}")
            if not reply.startswith("opened"):
                raise RuntimeError(f"the holder failed: {reply!r}")
            opened += wanted
        else:
            await asyncio.sleep(0.02)
    holding.channels = await _channels(redis, pattern)


async def _probe(port: int, callback_url: str, done: asyncio.Event) -> list[float]:
    """One callback put at a time, every PROBE_INTERVAL, until `done`; their latencies."""
    conn = await Connection.open(port)
    samples: list[float] = []
    try:
        while not done.is_set():
            raw = post(port, PUT, callback_put(len(samples), callback_url))
            started = time.perf_counter()
            reply = await conn.request(raw)
            samples.append(time.perf_counter() - started)
            if reply.status != 200:
                raise RuntimeError(f"probe put failed: {reply.status} {reply.body[:200]!r}")
            await asyncio.sleep(PROBE_INTERVAL)
    finally:
        await conn.close()
    return samples


async def _release(holding: Holding, stack: Stack, redis: Redis) -> float:
    """Close the held requests; how long until the API has let go of them all."""
    started = time.perf_counter()
    reply = _tell(holding.process, "close")
    holding.answered = int(reply.split()[1])
    pattern = Keys(stack.prefix).task_channel(QUEUE, "*")
    while await _channels(redis, pattern) > 0:
        if time.perf_counter() - started > 300:
            raise RuntimeError("the API did not drop the held requests' subscriptions")
        await asyncio.sleep(0.2)
    holding.process.wait(30)
    return time.perf_counter() - started


def _tell(process: subprocess.Popen[str], command: str) -> str:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(command + "\n")
    process.stdin.flush()
    return process.stdout.readline()


async def _channels(redis: Redis, pattern: str) -> int:
    return len(await redis.pubsub_channels(pattern))


def established_connections(port: int) -> int:
    """Loopback TCP connections to `port` that are ESTABLISHED at both ends."""
    server: set[str] = set()
    client: set[str] = set()
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                local, remote, state = line.split()[1:4]
                if state != "01":
                    continue
                if local.endswith(wanted):
                    server.add(remote)
                elif remote.endswith(wanted):
                    client.add(local)
    return len(server & client)


# -- the holder process -------------------------------------------------------------------
async def hold(port: int) -> None:
    """Serve `open N` (open N more blocking puts) and `close` (close them all) from stdin.

    `close` answers with how many held requests got an answer (none should).
    """
    raise_open_files_limit()
    raw = post(port, PUT, held_put())
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    answered: list[asyncio.Future[bytes]] = []
    while command := (await asyncio.to_thread(sys.stdin.readline)).split():
        if command[0] == "open":
            batch = await asyncio.gather(*(_open(port, raw) for _ in range(int(command[1]))))
            streams += batch
            answered += [asyncio.ensure_future(reader.read(1)) for reader, _ in batch]
            print(f"opened {len(streams)}", flush=True)
        elif command[0] == "close":
            break
    early = sum(1 for read in answered if read.done())
    for read in answered:
        read.cancel()
    for start in range(0, len(streams), BATCH):
        for _, writer in streams[start : start + BATCH]:
            writer.close()
        await asyncio.sleep(0.02)
    print(f"closed {early}", flush=True)


async def _open(port: int, raw: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    return reader, writer


if __name__ == "__main__":
    if sys.argv[1:2] == ["--hold"]:
        asyncio.run(hold(int(sys.argv[2])))
