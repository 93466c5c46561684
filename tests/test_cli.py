"""The console commands as real processes: api, worker (both ways), mock-upstream."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from queue_service.cli.main import build_parser
from queue_service.dev.embedded_redis import free_port
from tests.conftest import process_env
from tests.helpers import put, put_body, wait_until_up
from tests.servers import CallbackReceiver

BIN = Path(sys.executable).parent


def test_subcommands_are_the_documented_ones() -> None:
    parser = build_parser()
    assert parser.parse_args(["api"]).port == 8080
    assert parser.parse_args(["mock-upstream"]).port == 7860
    args = parser.parse_args(["worker", "--queues", "a,b", "--concurrency", "3"])
    assert (args.queues, args.concurrency) == ("a,b", 3)
    assert parser.parse_args(["dev"]).command == "dev"


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


@pytest.mark.parametrize(
    "worker_command",
    [["queue-service", "worker", "--concurrency", "4"], ["arq", "workers.main.WorkerSettings"]],
)
async def test_a_callback_job_through_real_processes(
    redis_url: str,
    prefix: str,
    receiver: tuple[str, CallbackReceiver],
    processes: list[subprocess.Popen[bytes]],
    worker_command: list[str],
) -> None:
    url, inbox = receiver
    api_port, mock_port = free_port(), free_port()
    env = process_env(redis_url, prefix, upstream_url=f"http://127.0.0.1:{mock_port}")
    commands = [
        ["queue-service", "mock-upstream", "--port", str(mock_port)],
        worker_command,
        ["queue-service", "api", "--port", str(api_port)],
    ]
    for command in commands:
        executable = [str(BIN / command[0]), *command[1:]]
        process = await asyncio.to_thread(
            subprocess.Popen, executable, env=env, stdin=subprocess.DEVNULL
        )
        processes.append(process)
    api = f"http://127.0.0.1:{api_port}"
    await wait_until_up(f"{api}/v1/queue/none")
    await wait_until_up(f"http://127.0.0.1:{mock_port}/healthz")

    async with httpx.AsyncClient(base_url=api) as client:
        job = put_body("procs", url, text="via processes")
        task_id = await put(client, job)
        (callback,) = await inbox.wait_for(1, timeout=20)
    assert callback["task_id"] == task_id
    assert callback["status"] == "succeeded"
    assert "via processes" in callback["body"]["choices"][0]["message"]["content"]

    for process in processes:  # SIGTERM stops each one cleanly
        process.send_signal(signal.SIGTERM)
    for process in processes:
        assert process.wait(15) in (0, -signal.SIGTERM)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"QUEUE_UPSTREAM_AUTH": "passthrough"}, "passthrough needs QUEUE_SECRET_KEY"),
        ({"QUEUE_CALLBACK_ALLOWED_NETWORKS": "10.0.0.0/33"}, "callback_allowed_networks: "),
        ({"QUEUE_CONCURRENCY": "zero"}, "concurrency: Input should be a valid integer"),
    ],
)
def test_a_bad_setting_stops_the_command_with_a_clear_message(
    env: dict[str, str], message: str
) -> None:
    for command in (["api"], ["worker"]):
        result = subprocess.run(
            [str(BIN / "queue-service"), *command],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode != 0
        assert "invalid configuration" in result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr
