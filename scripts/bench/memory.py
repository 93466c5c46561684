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
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from queue_service.dev.embedded_redis import EmbeddedRedis, free_port
from scripts.bench.lib import BIN, ROOT, MockUpstream, Stack, report, wait_for_port, wait_for_worker

QUEUE = "bench-memory"
PUT = "/v1/queue/put"
CHAT = "/v1/chat/completions"
SLOTS = 128
"""Worker slots: room for every stream at once."""
MODEL = "m" * 4000
"""The mock repeats the model name in every chunk: 4,000 characters make each event about
4.2 kB, so that a long stream is not millions of events (which this machine's two cores
would take minutes to relay)."""
RCVBUF = 4096
"""SO_RCVBUF of a client that does not read (the kernel doubles it)."""
SAMPLE_S = 0.1
SETTLE_S = 3.0
"""How long after the clients went away the `after` figure is read."""
BIG_PIECE = 1 << 20
TERMINAL = {"succeeded", "failed", "timeout", "cancelled"}


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
                        figures = await _big_answer(redis.url, stack, size)
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


def _head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


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
    status, headers = _head(head)
    return Stalled(sock, status, headers.get("x-task-id", ""))


async def _read_stream(port: int, raw: bytes) -> tuple[int, str, int]:
    """Send a streaming put and read all of it: (status, task id, bytes of body read)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:
        writer.write(raw)
        status, headers = _head(await reader.readuntil(b"\r\n\r\n"))
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


class BigUpstream:
    """An upstream answering every chat completion with `size` bytes in pieces (chunked,
    `application/json`, no Content-Length), except prompts saying "small" (a short reply)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0
        """Body bytes of the last big answer written before the client closed."""
        self.finished = False
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            _, headers = _head(b"HTTP/1.1 0 request\r\n" + head.split(b"\r\n", 1)[1])
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if b"small" in body:
                reply = orjson.dumps(_completion("small"))
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(reply), reply)
                )
                await writer.drain()
                return
            await self._big(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _big(self, writer: asyncio.StreamWriter) -> None:
        self.sent, self.finished = 0, False
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        opening = b'{"id":"big","object":"chat.completion","choices":[{"index":0,"message":'
        opening += b'{"role":"assistant","content":"'
        closing = b'"},"finish_reason":"stop"}]}'
        filler = b"x" * BIG_PIECE
        for piece in self._pieces(opening, filler, closing):
            writer.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            await writer.drain()
            self.sent += len(piece)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        self.finished = True

    def _pieces(self, opening: bytes, filler: bytes, closing: bytes) -> list[bytes]:
        middle = self.size - len(opening) - len(closing)
        count, rest = divmod(middle, len(filler))
        return [opening, *([filler] * count), filler[:rest], closing]


def _completion(text: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": text}
    return {
        "id": "small",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }


def _blocking_put(text: str) -> dict[str, Any]:
    data = {"model": "m", "messages": [{"role": "user", "content": text}]}
    return {
        "queue": QUEUE,
        "endpoint": CHAT,
        "level": 0,
        "data": data,
        "response_mode": "blocking",
        "timeout": 600,
    }


async def _big_answer(redis_url: str, stack: Stack, size: Size) -> Figures:
    figures = Figures()
    upstream = BigUpstream(size.big_bytes)
    await upstream.start()
    stack.upstream_url = upstream.url
    try:
        await asyncio.to_thread(stack.start, redis_url)
        worker = stack.processes[0].pid
        async with httpx.AsyncClient(timeout=size.limit_s) as client:
            put = f"{stack.api_url}{PUT}"
            warm = await client.post(put, json=_blocking_put("small"))
            if warm.status_code != 200:
                raise RuntimeError(f"the warm-up put answered {warm.status_code}: {warm.text}")
            await asyncio.sleep(1.0)
            figures.before = status_kib(worker)[0]
            started = time.monotonic()
            async with Sampler(worker, 0.05).running() as sampler:
                answer = await client.post(put, json=_blocking_put("big"))
            figures.seconds = time.monotonic() - started
        figures.peak = sampler.peak
        figures.hwm = status_kib(worker)[1]
        await asyncio.sleep(SETTLE_S)
        figures.after = status_kib(worker)[0]
        figures.outcome = _big_outcome(answer, upstream)
    finally:
        await asyncio.to_thread(stack.stop)
        await upstream.stop()
    return figures


def _big_outcome(answer: httpx.Response, upstream: BigUpstream) -> str:
    try:
        error = answer.json().get("error") or {}
    except ValueError:
        error = {}
    kind = f" {error.get('type')}" if isinstance(error, dict) and error.get("type") else ""
    sent = f"{upstream.sent / 2**20:,.0f} MiB"
    whole = "all of it" if upstream.finished else "then the worker closed"
    return f"answered {answer.status_code}{kind}; upstream sent {sent} ({whole})"
