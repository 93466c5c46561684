"""The processes a drill starts: a reaper that ends every one of them, whatever happens, and
the fleet (API, workers, mock upstream) of one drill."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from queue_service.dev.embedded_redis import free_port
from scripts.bench.lib import BIN, wait_for_port, wait_for_worker

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the drills process dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Reaper:
    """Every process the drills start, each logging to a file; `end_all` ends them all.

    Children run in sessions of their own, so a Ctrl-C reaches only the drills process, which
    then ends them in order. Spawn from the main thread only: the parent-death signal follows
    the thread that forked.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.processes.append(process)
        return process

    def adopt(self, process: subprocess.Popen[bytes] | None) -> None:
        """Also end this process (started by someone else) in `end_all`."""
        if process is not None and process not in self.processes:
            self.processes.append(process)

    def end(self, processes: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL whatever still runs after `grace` seconds."""
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        for process in processes:
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = [p for p in self.processes if p not in processes]

    def end_all(self) -> None:
        self.end(list(self.processes), grace=5.0)


def start_mock(reaper: Reaper, name: str) -> tuple[subprocess.Popen[bytes], int]:
    """`queue-service mock-upstream` on a free port; (process, port). Not yet waited for."""
    port = free_port()
    command = [str(BIN / "queue-service"), "mock-upstream", "--port", str(port)]
    env = {**os.environ, "QUEUE_LOG_LEVEL": "WARNING"}
    return reaper.spawn(f"{name}-mock", command, env), port


@dataclass
class Fleet:
    """One drill's API process (or processes) and workers, on a key prefix of their own."""

    reaper: Reaper
    name: str
    redis_url: str
    upstream_url: str
    concurrency: int
    env_extra: dict[str, str] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"drill{uuid.uuid4().hex[:10]}")
    api_count: int = 1
    """How many API processes: each on a port of its own, all on the same Redis and prefix."""
    api_ports: list[int] = field(init=False)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    apis: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _serial: int = 0

    def __post_init__(self) -> None:
        self.api_ports = []
        while len(self.api_ports) < self.api_count:
            port = free_port()
            if port not in self.api_ports:
                self.api_ports.append(port)

    @property
    def api_url(self) -> str:
        """The first API process's address."""
        return self.api_urls[0]

    @property
    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.api_ports]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "QUEUE_REDIS_URL": self.redis_url,
            "QUEUE_KEY_PREFIX": self.prefix,
            "QUEUE_UPSTREAM_URL": self.upstream_url,
            "QUEUE_CONCURRENCY": str(self.concurrency),
            "QUEUE_LOG_LEVEL": "WARNING",
            **self.env_extra,
        }

    async def start(self, workers: int) -> None:
        """Start the API processes and `workers` workers; return once every API listens and
        a worker runs."""
        for index, port in enumerate(self.api_ports):
            command = [str(BIN / "queue-service"), "api", "--port", str(port)]
            name = f"{self.name}-api" + (f"{index + 1}" if self.api_count > 1 else "")
            self.apis.append(self.reaper.spawn(name, command, self.env()))
        for _ in range(workers):
            self.start_worker()
        for port in self.api_ports:
            await asyncio.to_thread(wait_for_port, port, 60.0)
        await asyncio.to_thread(wait_for_worker, self.redis_url, self.prefix, 60.0)

    def start_worker(self) -> subprocess.Popen[bytes]:
        self._serial += 1
        command = [str(BIN / "queue-service"), "worker"]
        worker = self.reaper.spawn(f"{self.name}-worker{self._serial}", command, self.env())
        self.workers.append(worker)
        return worker

    def oldest_worker(self) -> subprocess.Popen[bytes]:
        return next(worker for worker in self.workers if worker.poll() is None)

    def kill9(self, worker: subprocess.Popen[bytes]) -> None:
        worker.kill()
        worker.wait()
        self.workers.remove(worker)

    def sigterm(self, worker: subprocess.Popen[bytes]) -> None:
        """Send SIGTERM; the worker leaves the fleet (wait for its exit yourself)."""
        worker.terminate()
        self.workers.remove(worker)

    async def stop(self) -> None:
        processes = [*self.workers, *self.apis]
        await asyncio.to_thread(self.reaper.end, processes, 40.0)
        self.workers.clear()
        self.apis.clear()
