"""What the `memory` scenario's measurements share: the sizes, the code trees measured, RSS
read from /proc (sampled on a thread of its own), the figures of one measurement, a Redis
of the scenario's own and a stack whose processes' logs become notes."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from queue_service.dev.embedded_redis import EmbeddedRedis, free_port
from scripts.bench.lib import BIN, Stack, wait_for_port, wait_for_worker

QUEUE = "bench-memory"
PUT = "/v1/queue/put"
CHAT = "/v1/chat/completions"
SAMPLE_S = 0.1
SETTLE_S = 3.0
"""How long after the clients went away the `after` figure is read."""


@dataclass(frozen=True)
class Size:
    clients: int
    tokens: int
    big_bytes: int
    limit_s: float
    """How long one measurement may take before it is cut short."""


FULL = Size(clients=100, tokens=2500, big_bytes=230 << 20, limit_s=180.0)
QUICK = Size(clients=20, tokens=2500, big_bytes=64 << 20, limit_s=60.0)


@dataclass(frozen=True)
class Tree:
    """The service code a measurement runs: its API and worker import it (PYTHONPATH)."""

    label: str
    path: Path

    @property
    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(self.path)}

    def describe(self) -> str:
        """Its label, path and commit (and whether its service code has changes on top)."""
        commit = self._git("describe", "--tags", "--always")
        if not commit:
            return f"{self.label} (`{self.path}`, not a git checkout)"
        changed = self._git("status", "--porcelain", "--", "queue_service", "workers")
        extra = ", with uncommitted changes to the service code" if changed else ""
        return f"{self.label} (`{self.path}`, {commit}{extra})"

    def _git(self, *args: str) -> str:
        command = ["git", "-C", str(self.path), *args]
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()


def status_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB, from /proc/<pid>/status."""
    values = {"VmRSS": 0, "VmHWM": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in values:
            values[name] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def mib(kib: int) -> str:
    return f"{kib / 1024:,.0f}"


class Sampler:
    """Samples a process's VmRSS every SAMPLE_S seconds (on a thread of its own, so that a
    busy event loop delays no sample) while the context lasts."""

    def __init__(self, pid: int, interval: float = SAMPLE_S) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.samples = 0

    def _run(self, stop: list[bool]) -> None:
        while not stop[0]:
            with contextlib.suppress(OSError):
                rss, _ = status_kib(self.pid)
                self.peak = max(self.peak, rss)
                self.samples += 1
            time.sleep(self.interval)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Sampler]:
        stop = [False]
        thread = asyncio.create_task(asyncio.to_thread(self._run, stop))
        try:
            yield self
        finally:
            stop[0] = True
            await thread


@dataclass
class Figures:
    """One measurement: RSS in KiB at each moment, and what became of the jobs."""

    before: int = 0
    peak: int = 0
    hwm: int = 0
    end: int | None = None
    """Non-reading clients: once every job ended, the clients still connected."""
    after: int = 0
    outcome: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def own_redis() -> AsyncIterator[EmbeddedRedis]:
    """A redis-server of the scenario's own (no persistence): gigabytes of pub/sub go through
    it, which a shared Redis should not have to carry."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-memory-redis-"))
    redis = EmbeddedRedis(data_dir, free_port(), appendonly=False)
    await asyncio.to_thread(redis.start)
    try:
        yield redis
    finally:
        await asyncio.to_thread(redis.stop)
        shutil.rmtree(data_dir, ignore_errors=True)


WATCHED = {
    "pub/sub connection lost": "the API's pub/sub hub lost its Redis connection",
    "ASGI callable returned without completing response": (
        "uvicorn: a response ended unfinished (a cut-off client that took not even the closing"
        " error event)"
    ),
    "output buffer limits": "Redis closed a client past its output buffer limit",
}
"""Log lines worth a note (substring: what it means), counted per measurement."""


@dataclass
class LoggedStack(Stack):
    """A Stack whose processes log to files (one per process) in `log_dir`, and a Redis log
    to watch too: what they said during a measurement becomes its notes."""

    log_dir: Path = field(default_factory=Path)
    redis_log: Path | None = None
    _redis_log_from: int = 0

    def start(self, redis_url: str) -> None:
        self.redis_url = redis_url
        if self.redis_log is not None and self.redis_log.exists():
            self._redis_log_from = self.redis_log.stat().st_size
        env = self.env(redis_url)
        worker = [str(BIN / "queue-service"), "worker"]
        api = [str(BIN / "queue-service"), "api", "--port", str(self.api_port)]
        for name, command in [*[("worker", worker)] * self.workers, ("api", api)]:
            with (self.log_dir / f"{name}.log").open("ab") as log:
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
                )
            self.processes.append(process)  # the API last: processes[-1]
        wait_for_port(self.api_port)
        if self.workers:
            wait_for_worker(redis_url, self.prefix)

    def said(self) -> list[str]:
        """What the processes and Redis logged that WATCHED lists, counted."""
        texts = [path.read_text(errors="replace") for path in self.log_dir.glob("*.log")]
        if self.redis_log is not None and self.redis_log.exists():
            with self.redis_log.open("rb") as log:
                log.seek(self._redis_log_from)
                texts.append(log.read().decode(errors="replace"))
        counts = {meaning: sum(t.count(line) for t in texts) for line, meaning in WATCHED.items()}
        return [f"{n} × {meaning}" for meaning, n in counts.items() if n]


def parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    """(status, lower-cased headers) of an HTTP/1.1 response head."""
    lines = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers
