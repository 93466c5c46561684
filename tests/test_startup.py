"""Redis absent when a process starts: the API serves at once (503 until Redis is reached) and
the worker waits for it, both trying every second with one log line per try, no credentials
in them; once Redis is there they work without a restart."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from queue_service.api.app import create_app
from queue_service.dev.embedded_redis import EmbeddedRedis, free_port
from queue_service.settings import Settings
from tests.conftest import process_env
from tests.helpers import eventually, put, put_body, view
from tests.servers import CallbackReceiver, serve

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
"""The checkout these tests belong to: its code is what the spawned worker runs."""
PASSWORD = "hunter2-not-for-logs"
TRY = re.compile(r"redis at (\S+) is not reachable \(try (\d+)")


class GuardedRedis(EmbeddedRedis):
    """An embedded redis-server that wants a password; `start` only launches it (its PING
    needs the password, so whoever uses it waits for it to answer)."""

    def command(self) -> list[str]:
        return [*super().command(), "--requirepass", PASSWORD]

    def start(self, wait: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL)


@pytest.fixture
def later_redis(tmp_path: Path) -> Iterator[GuardedRedis]:
    """A Redis port where nothing listens yet; the test starts the server when it wants."""
    server = GuardedRedis(tmp_path / "redis", free_port(), appendonly=False)
    yield server
    server.stop()


def url_with_password(server: EmbeddedRedis) -> str:
    return f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"


def tries(lines: list[str]) -> list[int]:
    """The try numbers of the "not reachable" lines, in order."""
    return [int(match[2]) for line in lines if (match := TRY.search(line))]


async def test_the_api_answers_503_without_redis_and_works_once_redis_comes(
    settings: Settings,
    later_redis: GuardedRedis,
    receiver: tuple[str, CallbackReceiver],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="queue_service.api.app")
    location = f"127.0.0.1:{later_redis.port}"
    absent = settings.model_copy(update={"redis_url": url_with_password(later_redis)})
    job = put_body("startup", receiver[0])

    def not_reachable() -> list[logging.LogRecord]:
        return [
            record
            for record in caplog.records
            if record.name == "queue_service.api.app" and TRY.search(record.getMessage())
        ]

    async with serve(create_app(absent)) as url, httpx.AsyncClient(base_url=url) as api:
        assert (await api.get("/healthz")).status_code == 200  # it serves at once
        ready = await api.get("/readyz")
        assert ready.status_code == 503, ready.text
        refused = await api.post("/v1/queue/put", json=job)
        assert refused.status_code == 503, refused.text
        assert "retry" in refused.json()["message"]
        assert "Traceback" not in refused.text
        assert PASSWORD not in refused.text
        # It keeps trying, once a second, one line per try.
        await eventually(lambda: len(not_reachable()) >= 2, timeout=5, what="a second try logged")

        await asyncio.to_thread(later_redis.start)

        async def ready_now() -> bool:
            return (await api.get("/readyz")).status_code == 200

        await eventually(ready_now, timeout=10, interval=0.1, what="/readyz 200")
        task_id = await put(api, job)
        assert (await view(api, task_id))["status"] == "queued"

    records = not_reachable()
    numbers = tries([record.getMessage() for record in records])
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    for record in records:
        message = record.getMessage()
        assert f"redis at redis://{location}/0 is not reachable" in message, message
        assert PASSWORD not in message
    for earlier, later in itertools.pairwise(records):
        assert 0.5 < later.created - earlier.created < 3, "about one try a second"
    assert PASSWORD not in caplog.text


async def test_the_worker_waits_for_redis_then_consumes_and_stops_cleanly(
    settings: Settings,
    prefix: str,
    later_redis: GuardedRedis,
    mock_upstream: tuple[str, object],
    receiver: tuple[str, CallbackReceiver],
    tmp_path: Path,
) -> None:
    url, inbox = receiver
    env = process_env(
        url_with_password(later_redis),
        prefix,
        upstream_url=mock_upstream[0],
        heartbeat_interval="0.2",
        registry_refresh_interval="0.2",
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    stderr_path = tmp_path / "worker.stderr"
    with stderr_path.open("wb") as stderr:
        worker = await asyncio.to_thread(
            subprocess.Popen,
            [str(BIN / "queue-service"), "worker", "--concurrency", "2"],
            env=env,
            stdin=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:

        def logged_tries() -> list[int]:
            return tries(stderr_path.read_text().splitlines())

        def still_waiting() -> bool:
            assert worker.poll() is None, f"the worker exited:\n{stderr_path.read_text()}"
            return len(logged_tries()) >= 2

        await eventually(still_waiting, timeout=10, interval=0.1, what="two tries logged")
        assert worker.poll() is None

        await asyncio.to_thread(later_redis.start)

        async def alive() -> bool:
            check = await asyncio.to_thread(
                subprocess.run,
                [str(BIN / "queue-service"), "worker", "--check"],
                env=env,
                capture_output=True,
                timeout=30,
            )
            return check.returncode == 0

        await eventually(alive, timeout=15, interval=0.2, what="worker --check to exit 0")

        # It consumes: a job put now runs and calls back.
        redis_up = settings.model_copy(update={"redis_url": url_with_password(later_redis)})
        async with serve(create_app(redis_up)) as api_url:
            async with httpx.AsyncClient(base_url=api_url) as api:
                task_id = await put(api, put_body("startup-worker", url, text="after the wait"))
            (callback,) = await inbox.wait_for(1, timeout=10)
        assert callback["task_id"] == task_id
        assert callback["status"] == "succeeded"

        worker.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 15)
        assert code in (0, -signal.SIGTERM), code
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(5)

    text = stderr_path.read_text()
    numbers = logged_tries()
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    lines = [line for line in text.splitlines() if TRY.search(line)]
    assert all("workers.entry" in line for line in lines), lines
    assert "Traceback" not in text, text
    assert PASSWORD not in text
