"""`queue-service submit`: a JSONL file of jobs against a live API, worker and mock upstream."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from arq.worker import Worker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from queue_service.api.app import create_app
from queue_service.cli.main import build_parser
from queue_service.cli.submit import STATE_SUFFIX, add_parser
from queue_service.settings import Settings
from tests.helpers import eventually
from tests.servers import CallbackReceiver, serve

# `queue-service submit ...` in a process of its own, whether or not cli.py has it yet.
SUBMIT_SCRIPT = """
import argparse, sys
from queue_service.cli.submit import add_parser
parser = argparse.ArgumentParser()
add_parser(parser.add_subparsers())
args = parser.parse_args()
args.run(args)
"""


@dataclass
class Service:
    """The API behind a counter of puts (each held `delay` seconds before it goes through)."""

    url: str
    puts: int = 0
    delay: float = 0.0
    answer_delay: float = 0.0
    """Seconds each put's answer is held after the put went through (a lost answer)."""

    def counting(self, app: ASGIApp) -> ASGIApp:
        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"] == "/v1/queue/put":
                self.puts += 1
                await asyncio.sleep(self.delay)

                async def held(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        await asyncio.sleep(self.answer_delay)
                    await send(message)

                await app(scope, receive, held)
                return
            await app(scope, receive, send)

        return counted


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    running = Service("")
    async with serve(running.counting(create_app(settings))) as url:
        running.url = url
        yield running


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="queue-service")
    add_parser(top.add_subparsers())
    return top


async def submit(*argv: str | Path) -> int:
    """Run the command in a thread (its own event loop); its exit status."""

    def run() -> int:
        args = parser().parse_args(["submit", *map(str, argv)])
        try:
            args.run(args)
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    return await asyncio.to_thread(run)


def chat(text: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


def write_lines(path: Path, values: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(value) + b"\n" for value in values))
    return path


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def reply(outcome: dict[str, Any]) -> str:
    content: str = outcome["body"]["choices"][0]["message"]["content"]
    return content


def common(service: Service, callback_url: str, *extra: str) -> list[str]:
    return ["--queue", "batch", "--api", service.url, "--callback-url", callback_url, *extra]


async def test_bare_lines_are_submitted_and_waited_for(
    tmp_path: Path,
    service: Service,
    worker: Worker,
    receiver: tuple[str, CallbackReceiver],
    capsys: pytest.CaptureFixture[str],
) -> None:
    jobs = write_lines(tmp_path / "jobs.jsonl", [chat(f"job {n}") for n in range(1, 21)])
    out = tmp_path / "results.jsonl"
    argv = common(service, receiver[0], "--wait", "--out", str(out), "--poll", "0.05")
    assert await submit(jobs, *argv, "--concurrency", "4") == 0

    outcomes = read_lines(out)
    assert sorted(o["custom_id"] for o in outcomes) == sorted(f"line-{n}" for n in range(1, 21))
    for outcome in outcomes:
        assert (outcome["status"], outcome["status_code"]) == ("succeeded", 200)
        assert f"job {outcome['custom_id'].removeprefix('line-')}" in reply(outcome)
    assert len({o["task_id"] for o in outcomes}) == 20
    assert len(read_lines(jobs.with_name("jobs.jsonl" + STATE_SUFFIX))) == 20
    assert service.puts == 20
    progress = capsys.readouterr().err
    assert "submitted [" in progress
    assert "finished [" in progress
    assert "20/20 100%" in progress
    assert "/s ETA" in progress


async def test_openai_batch_lines_give_custom_id_endpoint_and_body(
    tmp_path: Path, service: Service, worker: Worker, receiver: tuple[str, CallbackReceiver]
) -> None:
    batch = [
        {"custom_id": f"req-{n}", "method": "POST", "url": "/v1/chat/completions", "body": chat(n)}
        for n in ("a", "b", "c")
    ]
    jobs = tmp_path / "batch.jsonl"
    jobs.write_bytes(b"\n".join(orjson.dumps(line) for line in batch) + b"\n\n")  # a blank line
    out = tmp_path / "out.jsonl"
    argv = common(service, receiver[0], "--wait", "--out", str(out), "--poll", "0.05")
    assert await submit(jobs, *argv) == 0

    outcomes = {o["custom_id"]: o for o in read_lines(out)}
    assert sorted(outcomes) == ["req-a", "req-b", "req-c"]
    for name, outcome in outcomes.items():
        assert outcome["status"] == "succeeded"
        assert name.removeprefix("req-") in reply(outcome)
    delivered = await receiver[1].wait_for(3)
    assert {d["task_id"] for d in delivered} == {o["task_id"] for o in outcomes.values()}


async def test_a_killed_run_resumes_without_submitting_a_line_twice(
    tmp_path: Path, service: Service, worker: Worker, receiver: tuple[str, CallbackReceiver]
) -> None:
    jobs = write_lines(tmp_path / "jobs.jsonl", [chat(f"job {n}") for n in range(1, 21)])
    state_path = jobs.with_name("jobs.jsonl" + STATE_SUFFIX)
    service.delay = 0.05  # 20 puts one at a time: about a second
    argv = [*common(service, receiver[0]), "--concurrency", "1"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SUBMIT_SCRIPT, "submit", str(jobs), *argv
    )
    await eventually(
        lambda: state_path.exists() and state_path.read_bytes().count(b"\n") >= 5,
        timeout=10,
        interval=0.005,
    )
    process.kill()
    await process.wait()
    before = {r["line"]: r for r in read_lines(state_path)}
    assert 5 <= len(before) < 20

    service.delay, service.puts = 0.0, 0
    out = tmp_path / "results.jsonl"
    assert await submit(jobs, *argv, "--wait", "--out", str(out), "--poll", "0.05") == 0

    assert service.puts == 20 - len(before)
    outcomes = read_lines(out)
    assert sorted(o["custom_id"] for o in outcomes) == sorted(f"line-{n}" for n in range(1, 21))
    by_id = {o["custom_id"]: o for o in outcomes}
    for line, record in before.items():
        assert by_id[f"line-{line}"]["task_id"] == record["task_id"]
    assert {o["status"] for o in outcomes} == {"succeeded"}


async def test_bad_lines_are_reported_by_number_and_nothing_is_submitted(
    tmp_path: Path,
    service: Service,
    receiver: tuple[str, CallbackReceiver],
    capsys: pytest.CaptureFixture[str],
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        "\n".join(
            [
                orjson.dumps(chat("fine")).decode(),
                '{"model": "m", "messages": [',
                "[1, 2]",
                '{"custom_id": "x", "method": "GET", "url": "/v1/chat/completions", "body": {}}',
                '{"custom_id": "line-1", "body": {}}',
            ]
        )
    )
    assert await submit(jobs, *common(service, receiver[0])) == 2

    errors = capsys.readouterr().err
    assert f"{jobs}:2: not valid JSON" in errors
    assert f"{jobs}:3: a job must be a JSON object" in errors
    assert f"{jobs}:4: method must be \"POST\", not 'GET'" in errors
    assert f"{jobs}:5: custom_id 'line-1' already on line 1" in errors
    assert f"{jobs}:1:" not in errors
    assert "nothing submitted" in errors
    assert service.puts == 0
    assert not jobs.with_name("jobs.jsonl" + STATE_SUFFIX).exists()


async def test_a_line_the_service_refuses_stops_the_run_and_a_rerun_resumes(
    tmp_path: Path,
    service: Service,
    worker: Worker,
    receiver: tuple[str, CallbackReceiver],
    capsys: pytest.CaptureFixture[str],
) -> None:
    def batch(bad_url: str) -> list[dict[str, Any]]:
        lines = [{"custom_id": f"c{n}", "body": chat(f"job {n}")} for n in range(1, 7)]
        lines[3]["url"] = bad_url
        return lines

    jobs = write_lines(tmp_path / "jobs.jsonl", batch("/v1/not-served"))
    argv = common(service, receiver[0], "--concurrency", "1")
    assert await submit(jobs, *argv) == 1
    errors = capsys.readouterr().err
    assert f"{jobs}:4: HTTP 400: endpoint: endpoint '/v1/not-served' is not served" in errors
    assert "run the same command again to resume" in errors
    state_path = jobs.with_name("jobs.jsonl" + STATE_SUFFIX)
    assert [r["line"] for r in read_lines(state_path)] == [1, 2, 3]

    write_lines(jobs, batch("/v1/chat/completions"))
    service.puts = 0
    out = tmp_path / "out.jsonl"
    assert await submit(jobs, *argv, "--wait", "--out", str(out), "--poll", "0.05") == 0
    assert service.puts == 3
    assert sorted(o["custom_id"] for o in read_lines(out)) == [f"c{n}" for n in range(1, 7)]
    assert "resuming: 3 of 6 jobs submitted before" in capsys.readouterr().err


async def test_a_task_gone_since_an_earlier_run_is_written_as_not_found(
    tmp_path: Path, service: Service, worker: Worker, receiver: tuple[str, CallbackReceiver]
) -> None:
    jobs = write_lines(tmp_path / "jobs.jsonl", [chat("one"), chat("two")])
    gone = "TASK-1-1-C-260101000000-0001-000001"
    state = {"line": 1, "custom_id": "line-1", "task_id": gone}
    jobs.with_name("jobs.jsonl" + STATE_SUFFIX).write_bytes(orjson.dumps(state))  # no newline
    out = tmp_path / "out.jsonl"
    argv = common(service, receiver[0], "--wait", "--out", str(out), "--poll", "0.05")
    assert await submit(jobs, *argv) == 0

    assert service.puts == 1
    outcomes = {o["custom_id"]: o for o in read_lines(out)}
    assert (outcomes["line-1"]["status"], outcomes["line-1"]["status_code"]) == ("not_found", 404)
    assert outcomes["line-2"]["status"] == "succeeded"
    recorded = read_lines(jobs.with_name("jobs.jsonl" + STATE_SUFFIX))
    assert [r["line"] for r in recorded] == [1, 2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--wait"], "--wait and --out go together"),
        (["--callback-url", "http://x/cb", "--out", "o.jsonl"], "--wait and --out go together"),
        ([], "--callback-url is required"),
        (["--callback-url", "http://x/cb", "--concurrency", "0"], "--concurrency must be at"),
    ],
)
async def test_usage_errors(
    tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_lines(tmp_path / "jobs.jsonl", [chat("one")])
    assert await submit(jobs, "--queue", "q", *argv) == 2
    assert message in capsys.readouterr().err


def test_queue_service_has_the_submit_command() -> None:
    args = build_parser().parse_args(["submit", "jobs.jsonl", "--queue", "q", "--wait"])
    assert (args.command, args.queue, args.level, args.concurrency) == ("submit", "q", 1, 16)


async def jobs_on_server(service: Service) -> int:
    """How many jobs the service holds for queue `batch` (its put count)."""
    async with httpx.AsyncClient(base_url=service.url) as api:
        stats = (await api.get("/v1/queue/batch/stats")).json()["data"]
    return int(stats["totals"].get("put", 0))


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
async def test_an_interrupted_run_and_its_rerun_create_each_job_once(
    tmp_path: Path, service: Service, stop: signal.Signals
) -> None:
    total = 50
    jobs = write_lines(tmp_path / "jobs.jsonl", [chat(f"job {n}") for n in range(1, total + 1)])
    state_path = jobs.with_name("jobs.jsonl" + STATE_SUFFIX)
    service.answer_delay = 0.2  # 4 at a time, each put done but its answer held: under way
    argv = [*common(service, "http://127.0.0.1:9/cb"), "--concurrency", "4"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SUBMIT_SCRIPT,
        "submit",
        str(jobs),
        *argv,
        stderr=asyncio.subprocess.PIPE,
    )
    await eventually(
        lambda: state_path.exists() and state_path.read_bytes().count(b"\n") >= 8, timeout=10
    )
    process.send_signal(stop)
    _, stderr = await asyncio.wait_for(process.communicate(), 15)
    recorded = read_lines(state_path)
    assert len(recorded) < total
    if stop is not signal.SIGKILL:  # a clean stop: what was put is recorded, and said
        assert process.returncode == 130
        assert f"interrupted: {len(recorded)} of {total} jobs submitted" in stderr.decode()
        assert await jobs_on_server(service) == len(recorded)

    service.answer_delay = 0.0
    assert await submit(jobs, *argv) == 0
    assert len(read_lines(state_path)) == total
    assert await jobs_on_server(service) == total  # never a second job for a line
