"""Scenario `throughput`: callback puts per second against a bare endpoint that only parses the
JSON and XADDs it (`scripts.bench.bare`), both served by uvicorn in one process on the same Redis.

The load comes from separate client processes (`python -m scripts.bench.throughput --load
...`), each driving keep-alive connections with a prebuilt request on raw sockets; each
reports its own CPU time, so the table shows whether the client or the server ran out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson
from redis import Redis

from queue_service.dev.embedded_redis import free_port
from scripts.bench.lib import ROOT, Stack, cpu_seconds, report, wait_for_port
from scripts.bench.rawhttp import Connection, post

QUEUE = "bench-throughput"
PUT = "/v1/queue/put"
CONNECTIONS = 64
"""Concurrent clients (keep-alive connections, one request in flight each), over all the
client processes."""


def job_body() -> dict[str, Any]:
    data = {"model": "m", "messages": [{"role": "user", "content": "count the puts"}]}
    return {
        "queue": QUEUE,
        "endpoint": "/v1/chat/completions",
        "level": 0,
        "data": data,
        "callback_url": "http://127.0.0.1:9/callback",
    }


@dataclass
class Run:
    puts_per_s: float
    server_cpu: float
    """Server process CPU time over the run, as a share of one core."""
    redis_cpu: float
    client_cpu: float
    """All client processes' CPU time, as a share of one core."""


async def throughput(args: argparse.Namespace, redis_url: str) -> None:
    """Puts/s of the queue API and of the bare endpoint, alternating, same load."""
    puts = 1000 if args.quick else 6000
    rounds = 1 if args.quick else 3
    stack = Stack("http://127.0.0.1:9", workers=0)  # no worker: the jobs stay queued
    await asyncio.to_thread(stack.start, redis_url)
    bare_port = free_port()
    bare_stream = f"{stack.prefix}:bare"  # under the stack's prefix: removed with its keys
    bare = subprocess.Popen(
        [sys.executable, "-m", "scripts.bench.bare", str(bare_port), redis_url, bare_stream],
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
    )
    runs: dict[str, list[Run]] = {"bare 1": [], "queue 1": [], "bare 2": []}
    try:
        await asyncio.to_thread(wait_for_port, bare_port)
        servers = {
            "bare": (bare_port, bare.pid),
            "queue": (stack.api_port, stack.processes[-1].pid),
        }
        redis_pid = _redis_pid(redis_url)
        for port, _ in servers.values():  # warm-up; registers the queue
            await _load(port, 1, 500, redis_pid, 0)
        for _ in range(rounds):
            for name in runs:
                target, procs = name.split()
                port, pid = servers[target]
                runs[name].append(await _load(port, int(procs), puts, redis_pid, pid))
    finally:
        bare.terminate()
        bare.wait(10)
        await asyncio.to_thread(stack.stop)
    _report(args, puts, rounds, runs)


def _report(args: argparse.Namespace, puts: int, rounds: int, runs: dict[str, list[Run]]) -> None:
    labels = {
        "bare 1": "**bare endpoint** (parse + XADD), 1 client process",
        "queue 1": "**queue-service put**, 1 client process",
        "bare 2": "client check: bare endpoint, 2 client processes",
    }
    rate = {name: statistics.median(r.puts_per_s for r in rs) for name, rs in runs.items()}
    cost = {
        name: statistics.median(r.server_cpu / r.puts_per_s for r in rs)
        for name, rs in runs.items()
    }
    table = [
        "| server | puts/s | server CPU µs per put | server CPU | Redis CPU | client CPU |",
        "|---|---|---|---|---|---|",
    ]
    for name, rs in runs.items():
        shares = [statistics.median(getattr(r, f) for r in rs) for f in _CPU_FIELDS]
        table.append(
            f"| {labels[name]} | {rate[name]:,.0f} | {cost[name] * 1e6:.0f} | "
            + " | ".join(f"{share * 100:.0f} %" for share in shares)
            + " |"
        )
    table += [
        f"| **queue ÷ bare**, puts/s | **{rate['queue 1'] / rate['bare 1']:.0%}** | | | | |",
        f"| **bare ÷ queue**, server CPU per put (puts/s on a core of its own) | "
        f"| **{cost['bare 1'] / cost['queue 1']:.0%}** | | | |",
    ]
    notes = [
        f"{puts:,} callback puts per run over {CONNECTIONS} keep-alive connections (one request",
        f"in flight each), split over the client processes; {rounds} rounds of the three rows in",
        "turn; medians over the rounds. CPU: CPU seconds per second of the run (100 % = one",
        "core); per put: the server's CPU time over the puts it answered, which does not",
        "depend on how much of the shared machine the server got. Both servers: one uvicorn",
        "process (uvloop, httptools), the same Redis. The bare endpoint reads the body, parses",
        "it with orjson and XADDs it to a stream; the queue validates the put, stores the task",
        "record and XADDs its id (one Lua script). No worker runs (the bare endpoint has none",
        "either): the jobs stay queued. The clients are raw asyncio HTTP/1.1 on prebuilt",
        "requests. Client check: if the client were the limit, a second client process would",
        "raise the bare endpoint's rate, and the client's CPU would near a core; clients,",
        "server and Redis share this machine's 2 cores, so a second client process mostly",
        "takes CPU from the server. Target: queue ≥ 80 % of bare.",
    ]
    report("throughput", args.command, table, notes)


_CPU_FIELDS = ("server_cpu", "redis_cpu", "client_cpu")


def _redis_pid(redis_url: str) -> int:
    with Redis.from_url(redis_url) as redis:
        info: dict[str, Any] = redis.info("server")
        return int(info["process_id"])


async def _load(port: int, procs: int, puts: int, redis_pid: int, server_pid: int) -> Run:
    """Run `puts` puts from `procs` client processes at once; measure rate and CPU."""
    command = [sys.executable, "-m", "scripts.bench.throughput", "--load", str(port)]
    clients = [
        subprocess.Popen(
            [*command, str(CONNECTIONS // procs), str(puts // procs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(procs)
    ]
    for client in clients:
        assert client.stdout is not None
        if (await asyncio.to_thread(client.stdout.readline)).strip() != "ready":
            raise RuntimeError("a load client failed to start")
    before = cpu_seconds(server_pid), cpu_seconds(redis_pid)
    for client in clients:
        assert client.stdin is not None
        client.stdin.write("go\n")
        client.stdin.flush()
    results = [json.loads((await asyncio.to_thread(c.communicate))[0]) for c in clients]
    after = cpu_seconds(server_pid), cpu_seconds(redis_pid)
    if errors := sum(r["errors"] for r in results):
        raise RuntimeError(f"{errors} puts failed")
    elapsed = max(r["end"] for r in results) - min(r["start"] for r in results)
    return Run(
        puts_per_s=sum(r["done"] for r in results) / elapsed,
        server_cpu=(after[0] - before[0]) / elapsed,
        redis_cpu=(after[1] - before[1]) / elapsed,
        client_cpu=sum(r["cpu"] for r in results) / elapsed,
    )


# -- a load client process ------------------------------------------------------------------
async def generate(port: int, connections: int, count: int) -> None:
    """Open `connections`; on `go` from stdin send `count` puts over them; print a summary."""
    raw = post(port, PUT, job_body())
    conns = [await Connection.open(port) for _ in range(connections)]
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    left, errors = count, 0

    async def client(conn: Connection) -> None:
        nonlocal left, errors
        while left > 0:
            left -= 1
            reply = await conn.request(raw)
            if reply.status != 200:
                errors += 1

    cpu, start = time.process_time(), time.time()
    await asyncio.gather(*(client(conn) for conn in conns))
    end = time.time()
    summary = {"done": count, "errors": errors, "start": start, "end": end}
    print(orjson.dumps({**summary, "cpu": time.process_time() - cpu}).decode(), flush=True)
    for conn in conns:
        await conn.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--load"]:
        import uvloop

        uvloop.run(generate(*map(int, sys.argv[2:5])))
