"""`queue-service submit FILE`: put every job of a JSONL file on a queue, resumably.

Each non-blank line is one job: either a bare request body (the job's `data`; its custom_id is
`line-N`) or an OpenAI batch line `{"custom_id", "method": "POST", "url", "body"}` (`url` is
the endpoint, `body` the data).

Bad lines abort: the whole file is checked first, every bad line is reported with its number
and nothing is submitted (exit 2). A line the service refuses stops the run (exit 1) once the
puts under way end; fix it and run again.

Resuming: each submitted line is appended, flushed, to `FILE.submitted` as
`{"line", "custom_id", "task_id"}`, and a later run skips the lines found there. Every put
carries an `Idempotency-Key` made from the file and the line's custom_id, so a line put again
after a kill (between its put and its record) creates no second job: the service answers the
first task's id. Ctrl-C or SIGTERM stops taking new lines, lets the puts under way finish and
records them, says how far it got, and exits 130.

With `--wait --out RESULTS`, every task of the file (this run's and earlier runs') is waited
for and RESULTS gets one line per job as it ends:
`{"custom_id", "task_id", "status", "status_code", "body"}`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

import orjson

from queue_service.client import AsyncQueueClient, NotFound, QueueClientError, QueueFull

STATE_SUFFIX = ".submitted"
T = TypeVar("T")
_BATCH_KEYS = frozenset({"custom_id", "method", "url", "body"})


@dataclass(frozen=True, slots=True)
class Job:
    line: int
    custom_id: str
    endpoint: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Submitted:
    line: int
    custom_id: str
    task_id: str


@dataclass
class BadLine(Exception):
    line: int
    message: str


def parse_line(number: int, text: bytes, endpoint: str) -> Job:
    """One line of the file as a job (BadLine when it is not one)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadLine(number, f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadLine(number, "a job must be a JSON object")
    if "custom_id" not in value or "body" not in value:
        return Job(number, f"line-{number}", endpoint, value)
    if unknown := sorted(value.keys() - _BATCH_KEYS):
        raise BadLine(number, f"unknown field(s) in a batch line: {', '.join(unknown)}")
    custom_id, body = value["custom_id"], value["body"]
    method, url = value.get("method", "POST"), value.get("url", endpoint)
    if not isinstance(custom_id, str) or not custom_id:
        raise BadLine(number, "custom_id must be a non-empty string")
    if method != "POST":
        raise BadLine(number, f'method must be "POST", not {method!r}')
    if not isinstance(url, str) or not url.startswith("/"):
        raise BadLine(number, f"url must be an endpoint path like {endpoint}, not {url!r}")
    if not isinstance(body, dict):
        raise BadLine(number, "body must be a JSON object")
    return Job(number, custom_id, url, body)


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The file's non-blank lines, numbered from 1."""
    with path.open("rb") as file:
        yield from ((number, text) for number, text in enumerate(file, 1) if text.strip())


def jobs_in(path: Path, endpoint: str) -> Iterator[Job]:
    return (parse_line(number, text, endpoint) for number, text in _lines(path))


def check(path: Path, endpoint: str, state: dict[int, Submitted]) -> tuple[int, list[str]]:
    """How many jobs the file holds, and every problem with it as `FILE:LINE: problem`."""
    first_use: dict[str, int] = {}
    problems: list[BadLine] = []
    lines: set[int] = set()
    for number, text in _lines(path):
        try:
            job = parse_line(number, text, endpoint)
        except BadLine as exc:
            problems.append(exc)
            continue
        lines.add(number)
        if (first := first_use.setdefault(job.custom_id, number)) != number:
            problems.append(BadLine(number, f"custom_id {job.custom_id!r} already on line {first}"))
        done = state.get(number)
        if done is not None and done.custom_id != job.custom_id:
            message = (
                f"custom_id {job.custom_id!r}, but {done.custom_id!r} was submitted from this"
                f" line (remove {path.name}{STATE_SUFFIX} to start over)"
            )
            problems.append(BadLine(number, message))
    problems += [BadLine(n, "submitted before, not in the file now") for n in state.keys() - lines]
    problems.sort(key=lambda problem: problem.line)
    return len(lines), [f"{path}:{problem.line}: {problem.message}" for problem in problems]


def load_state(path: Path) -> dict[int, Submitted]:
    """The lines submitted by earlier runs (a record cut short by a kill is left out)."""
    if not path.exists():
        return {}
    records: dict[int, Submitted] = {}
    for text in path.read_bytes().splitlines():
        try:
            value = orjson.loads(text)
            record = Submitted(int(value["line"]), str(value["custom_id"]), str(value["task_id"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        records[record.line] = record
    return records


def append_state(path: Path) -> IO[bytes]:
    """The state file, open for appending after its last complete record."""
    file = path.open("a+b")
    if file.seek(0, os.SEEK_END):
        file.seek(-1, os.SEEK_END)
        if file.read(1) != b"\n":
            file.write(b"\n")
    return file


class Progress:
    """`label [#####.....] 12/20  60% 35.1/s ETA 0:00:03` on stderr, redrawn up to 10 times/s."""

    WIDTH = 30

    def __init__(self, label: str, total: int, done: int = 0) -> None:
        self.label, self.total, self.done = label, total, done
        self._first = done
        self._started = self._drawn = time.monotonic()
        self._draw()

    def advance(self) -> None:
        self.done += 1
        if time.monotonic() - self._drawn >= 0.1:
            self._draw()

    def close(self) -> None:
        self._draw()
        sys.stderr.write("\n")

    def _draw(self) -> None:
        self._drawn = time.monotonic()
        rate = (self.done - self._first) / max(self._drawn - self._started, 1e-6)
        eta = str(timedelta(seconds=round((self.total - self.done) / rate))) if rate else "?"
        share = self.done / self.total if self.total else 1.0
        bar = ("#" * round(self.WIDTH * share)).ljust(self.WIDTH, ".")
        sys.stderr.write(
            f"\r{self.label} [{bar}] {self.done}/{self.total} {share:4.0%} {rate:.1f}/s ETA {eta}"
        )
        sys.stderr.flush()


def idempotency_key(path: Path, job: Job) -> str:
    """The line's own Idempotency-Key, the same in every run over this file: a put that is
    sent again (its answer lost to a kill, say) creates no second job."""
    named = f"{path.resolve()}\0{job.custom_id}".encode()
    return "submit-" + hashlib.sha256(named).hexdigest()[:40]


async def _put(client: AsyncQueueClient, job: Job, args: argparse.Namespace) -> str:
    """Put one job, waiting out a full queue (or a rate limit) as the service asks."""
    while True:
        try:
            return await client.put(
                args.queue,
                job.endpoint,
                job.data,
                level=args.level,
                callback_url=args.callback_url,
                idempotency_key=idempotency_key(args.file, job),
            )
        except QueueFull as exc:
            await asyncio.sleep(exc.retry_after or 1.0)


async def for_each(
    items: Iterator[T],
    step: Callable[[T], Awaitable[None]],
    where: Callable[[T], str],
    progress: Progress,
    concurrency: int,
    stop: asyncio.Event,
) -> list[str]:
    """`step` every item, `concurrency` at a time, until the first error or `stop` (the
    steps under way end first); the errors."""
    failures: list[str] = []

    async def steps() -> None:
        for item in items:
            if failures or stop.is_set():
                return
            try:
                await step(item)
            except QueueClientError as exc:
                failures.append(f"{where(item)}: {exc.message}")
                return
            progress.advance()

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(steps())
    progress.close()
    return failures


async def submit_jobs(
    client: AsyncQueueClient,
    args: argparse.Namespace,
    state: dict[int, Submitted],
    total: int,
    stop: asyncio.Event,
) -> list[str]:
    """Put every job not in `state`, recording each in the state file; the errors."""

    async def put(job: Job) -> None:
        task_id = await _put(client, job, args)
        state[job.line] = record = Submitted(job.line, job.custom_id, task_id)
        record_to.write(orjson.dumps(asdict(record)) + b"\n")
        record_to.flush()

    pending = (job for job in jobs_in(args.file, args.endpoint) if job.line not in state)
    progress = Progress("submitted", total, len(state))
    with append_state(args.file.with_name(args.file.name + STATE_SUFFIX)) as record_to:
        return await for_each(
            pending, put, lambda job: f"{args.file}:{job.line}", progress, args.concurrency, stop
        )


async def _outcome(client: AsyncQueueClient, record: Submitted, poll: float) -> dict[str, Any]:
    try:
        view = await client.wait(record.task_id, poll=poll)
    except NotFound as exc:  # e.g. dropped past QUEUE_RESULT_RETENTION since an earlier run
        view = {"status": "not_found", "status_code": 404, "result": {"error": exc.message}}
    outcome = {key: view[key] for key in ("status", "status_code")} | {"body": view["result"]}
    return {"custom_id": record.custom_id, "task_id": record.task_id} | outcome


async def wait_jobs(
    client: AsyncQueueClient,
    args: argparse.Namespace,
    records: list[Submitted],
    stop: asyncio.Event,
) -> list[str]:
    """Write every task's outcome to `--out` as it ends; the errors."""

    async def wait(record: Submitted) -> None:
        out.write(orjson.dumps(await _outcome(client, record, args.poll)) + b"\n")

    def where(record: Submitted) -> str:
        return f"{args.file}:{record.line}: {record.task_id}"

    with args.out.open("wb") as out:
        progress = Progress("finished", len(records))
        return await for_each(iter(records), wait, where, progress, args.concurrency, stop)


def _report(*lines: str) -> None:
    print(*lines, sep="\n", file=sys.stderr)


async def submit(args: argparse.Namespace) -> int:
    """The whole command; its exit status."""
    path: Path = args.file
    state_path = path.with_name(path.name + STATE_SUFFIX)
    state = load_state(state_path)
    total, problems = check(path, args.endpoint, state)
    if problems:
        _report(*problems, "nothing submitted")
        return 2
    if state:
        _report(f"resuming: {len(state)} of {total} jobs submitted before")
    before = len(state)
    with _interruptible() as stop:
        async with AsyncQueueClient(args.api, api_key=args.api_key) as client:
            failures = await submit_jobs(client, args, state, total, stop)
            if failures:
                _report(*failures, "stopped: run the same command again to resume")
                return 1
            if stop.is_set():
                _report(
                    f"interrupted: {len(state)} of {total} jobs submitted "
                    f"({len(state) - before} in this run); run the same command to resume"
                )
                return INTERRUPTED
            if args.wait:
                records = sorted(state.values(), key=lambda r: r.line)
                failures = await wait_jobs(client, args, records, stop)
                if failures or stop.is_set():
                    _report(*failures, f"stopped waiting: {args.out} is incomplete; run again")
                    return 1 if failures else INTERRUPTED
    return 0


INTERRUPTED = 130


@contextlib.contextmanager
def _interruptible() -> Iterator[asyncio.Event]:
    """An event set by Ctrl-C (SIGINT) or SIGTERM, instead of their usual abrupt end."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Signals reach the main thread only (elsewhere, e.g. run from another program's thread,
    # they keep their usual meaning).
    main = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGINT, signal.SIGTERM) if main else ()
    for number in signals:
        loop.add_signal_handler(number, stop.set)
    try:
        yield stop
    finally:
        for number in signals:
            loop.remove_signal_handler(number)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `submit` on `queue-service`'s subcommands."""
    parser = subparsers.add_parser(
        "submit", help="put every job of a JSONL file on a queue (resumable)"
    )
    parser.add_argument("file", type=Path, help="one job per line: a request body or a batch line")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--level", type=int, choices=(0, 1), default=1)
    parser.add_argument("--endpoint", default="/v1/chat/completions", help="for bare lines")
    parser.add_argument("--callback-url", help="where the service POSTs each result")
    parser.add_argument("--wait", action="store_true", help="wait for every job to end")
    parser.add_argument("--out", type=Path, help="with --wait: the results, one JSON line per job")
    parser.add_argument("--poll", type=float, default=1.0, help="with --wait: seconds apart")
    parser.add_argument("--api", default="http://127.0.0.1:8080", help="the service's base URL")
    parser.add_argument("--api-key")
    parser.add_argument("--concurrency", type=int, default=16, help="requests under way at once")

    def run(args: argparse.Namespace) -> None:
        if args.wait != (args.out is not None):
            parser.error("--wait and --out go together")
        if not args.callback_url:  # the service refuses queued jobs without one (400)
            parser.error("--callback-url is required (--wait --out also collects the results)")
        if args.concurrency < 1:
            parser.error("--concurrency must be at least 1")
        if status := asyncio.run(submit(args)):
            sys.exit(status)

    parser.set_defaults(run=run)
