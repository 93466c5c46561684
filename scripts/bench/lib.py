"""Shared pieces of the benchmarks, the drills and the fuzzer: a service stack of real
processes, latency statistics, and the BENCHMARKS.md writer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from queue_service.dev.embedded_redis import EmbeddedRedis, free_port
from queue_service.store.probe import redis_answers

if TYPE_CHECKING:
    import httpx

ROOT = Path(__file__).resolve().parents[2]
"""The repository root: BENCHMARKS.md and DRILLS.md are written here."""
BIN = Path(sys.executable).parent


@dataclass
class Stack:
    """An API process and worker processes on loopback, on a key prefix of their own."""

    upstream_url: str
    workers: int = 1
    concurrency: int = 16
    env_extra: dict[str, str] = field(default_factory=dict)
    api_port: int = field(default_factory=free_port)
    prefix: str = field(default_factory=lambda: f"bench{uuid.uuid4().hex[:8]}")
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    redis_url: str = ""

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self, redis_url: str) -> dict[str, str]:
        return {
            **os.environ,
            "QUEUE_REDIS_URL": redis_url,
            "QUEUE_KEY_PREFIX": self.prefix,
            "QUEUE_UPSTREAM_URL": self.upstream_url,
            "QUEUE_CONCURRENCY": str(self.concurrency),
            "QUEUE_LOG_LEVEL": "WARNING",
            "QUEUE_CALLBACK_ALLOWED_NETWORKS": "127.0.0.0/8",  # the mock's callback inbox
            **self.env_extra,
        }

    def start(self, redis_url: str) -> None:
        self.redis_url = redis_url
        env = self.env(redis_url)
        worker = [str(BIN / "queue-service"), "worker"]
        api = [str(BIN / "queue-service"), "api", "--port", str(self.api_port)]
        for command in [*[worker] * self.workers, api]:  # the API last: processes[-1]
            self.processes.append(subprocess.Popen(command, stdin=subprocess.DEVNULL, env=env))
        wait_for_port(self.api_port)
        if self.workers:
            wait_for_worker(redis_url, self.prefix)

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        from redis import Redis

        with Redis.from_url(self.redis_url) as redis:  # leave the Redis as we found it
            for key in redis.scan_iter(match=f"{self.prefix}:*", count=1000):
                redis.delete(key)


def wait_for_worker(redis_url: str, prefix: str, timeout: float = 30.0) -> None:
    """Until a worker on `prefix` is up (arq writes its health-check key once started)."""
    from redis import Redis

    from queue_service.store.keys import Keys

    key = Keys(prefix).arq_health_check
    deadline = time.monotonic() + timeout
    with Redis.from_url(redis_url) as redis:
        while not redis.exists(key):
            if time.monotonic() > deadline:
                raise RuntimeError("no worker started")
            time.sleep(0.05)


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@contextlib.contextmanager
def redis_for_bench() -> Iterator[str]:
    """QUEUE_REDIS_URL, the local Redis, or an embedded one for the run."""
    configured = os.environ.get("QUEUE_REDIS_URL")
    if configured:
        yield configured
        return
    if redis_answers():
        yield "redis://127.0.0.1:6379/0"
        return
    embedded = EmbeddedRedis(ROOT / ".queue-service" / "bench-redis", free_port(), appendonly=False)
    embedded.start()
    try:
        yield embedded.url
    finally:
        embedded.stop()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(samples: list[float]) -> tuple[float, float]:
    """(median, p99) in milliseconds of samples in seconds."""
    return statistics.median(samples) * 1000, percentile(samples, 99) * 1000


def machine() -> str:
    cpus = os.cpu_count()
    python = platform.python_version()
    return f"{platform.node()} · {platform.machine()} · {cpus} CPUs · Python {python}"


def report(name: str, command: str, table: list[str], notes: list[str]) -> None:
    """Print a scenario's table and notes, and write them as its BENCHMARKS.md section."""
    print(f"\n## {name}\n" + "\n".join(table) + "\n" + "\n".join(notes), flush=True)
    write_section(name, command, table, notes)


def write_section(name: str, command: str, table: list[str], notes: list[str]) -> None:
    """Replace (or add) the section `name` in BENCHMARKS.md."""
    path = ROOT / "BENCHMARKS.md"
    new = "# Benchmarks\n\nFigures from `python -m scripts.bench`.\n"
    text = path.read_text() if path.exists() else new
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = "\n".join(
        [
            start,
            f"## {name}",
            "",
            f"`{command}` on {stamp}, {machine()}",
            "",
            *table,
            "",
            *notes,
            end,
        ]
    )
    if start in text:
        before, rest = text.split(start, 1)
        text = before + body + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    path.write_text(text)


class MockUpstream:
    """`queue-service mock-upstream` as a process of its own."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [str(BIN / "queue-service"), "mock-upstream", "--port", str(self.port), *args]
        env = {**os.environ, "QUEUE_LOG_LEVEL": "WARNING"}
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, env=env)
        wait_for_port(self.port)

    def __enter__(self) -> MockUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)

    async def callbacks(
        self, client: httpx.AsyncClient, at_least: int, interval: float = 0.5
    ) -> list[Any]:
        """The callbacks its inbox (`/_mock/callbacks`) received, once it holds `at_least`."""
        while True:
            received: list[Any] = (await client.get(f"{self.url}/_mock/callbacks")).json()
            if len(received) >= at_least:
                return received
            await asyncio.sleep(interval)

    async def arrivals(self) -> dict[str, float]:
        """When each recorded request arrived, by its last message's text."""
        import httpx

        async with httpx.AsyncClient() as client:
            recorded = (await client.get(f"{self.url}/_mock/requests")).json()
        return {r["body"]["messages"][-1]["content"]: r["received_at"] for r in recorded}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process on this machine (0 when it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds that some processes use between `start()` and `used()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start = {name: 0.0 for name in pids}

    def start(self) -> None:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def used(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) - self._start[name] for name, pid in self.pids.items()}


class Put(NamedTuple):
    sent: float
    accepted: float
    """time.time() when the put was sent and when its answer came."""
    task_id: str


def put_request(port: int, body: Any, key: str | None = None) -> bytes:
    """The bytes of a keep-alive `POST /v1/queue/put` of `body`, with an API key if given."""
    from scripts.bench.rawhttp import post

    line, rest = post(port, "/v1/queue/put", body).split(b"\r\n", 1)
    auth = f"\r\nauthorization: Bearer {key}" if key is not None else ""
    return line + auth.encode() + b"\r\n" + rest


async def put_all(port: int, requests: list[tuple[str, bytes]], in_flight: int) -> dict[str, Put]:
    """Send prebuilt puts (tag, bytes) in order, `in_flight` at a time on keep-alive
    connections; each accepted put by tag. A refused put raises."""

    import orjson

    from scripts.bench.rawhttp import Connection

    pending = iter(requests)
    done: dict[str, Put] = {}

    async def sender() -> None:
        conn = await Connection.open(port)
        try:
            for tag, raw in pending:
                sent = time.time()
                reply = await conn.request(raw)
                if reply.status != 200:
                    raise RuntimeError(f"put {tag}: {reply.status} {reply.body[:300]!r}")
                done[tag] = Put(sent, time.time(), orjson.loads(reply.body)["data"])
        finally:
            await conn.close()

    await asyncio.gather(*(sender() for _ in range(min(in_flight, len(requests)))))
    return done


async def wait_for_field(redis_url: str, keys: list[str], name: str, within: float) -> None:
    """Until every hash of `keys` has the field `name` (a task's `started_at`, ...); at most
    `within` seconds."""

    from redis.asyncio import Redis

    deadline = time.monotonic() + within
    async with Redis.from_url(redis_url) as redis:
        while keys:
            async with redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hexists(key, name)
                found = await pipe.execute()
            keys = [key for key, there in zip(keys, found, strict=True) if not there]
            if keys and time.monotonic() > deadline:
                raise RuntimeError(f"{len(keys)} tasks still without {name} after {within} s")
            await asyncio.sleep(0.2)
