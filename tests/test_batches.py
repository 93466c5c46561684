"""OpenAI's Batch API through the official SDK: the documented example runs with only
`base_url` (and the key) changed, against any upstream (here the mock, which has no batch
API of its own)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from arq.worker import Worker
from redis.asyncio import Redis

from queue_service.api.app import create_app
from queue_service.settings import Settings
from queue_service.signing import verify_callback
from queue_service.store.keys import Keys
from tests.conftest import running_worker
from tests.helpers import eventually
from tests.servers import CallbackReceiver, serve
from workers.batch_sweep import sweep_batches


def request_line(n: int, url: str = "/v1/chat/completions") -> dict[str, Any]:
    return {
        "custom_id": f"request-{n}",
        "method": "POST",
        "url": url,
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Hi {n}"}]},
    }


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def the_documented_example(base_url: str, path: Path) -> str:
    """OpenAI's batch guide, verbatim but for `base_url`, `api_key` and the poll loop."""
    import time

    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="sk-unused")

    batch_input_file = client.files.create(file=open(path, "rb"), purpose="batch")  # noqa: SIM115
    batch_input_file_id = batch_input_file.id
    batch = client.batches.create(
        input_file_id=batch_input_file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"description": "nightly eval job"},
    )
    for _ in range(600):  # poll (bounded): the guide leaves polling to the reader
        batch = client.batches.retrieve(batch.id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            break
        time.sleep(0.05)
    assert batch.status == "completed", batch
    assert batch.output_file_id is not None
    file_response = client.files.content(batch.output_file_id)
    return file_response.text


async def test_the_documented_example_gives_what_one_by_one_calls_give(
    api: httpx.AsyncClient, worker: Worker, tmp_path: Path
) -> None:
    lines = [request_line(n) for n in range(20)]
    path = write_jsonl(tmp_path / "batchinput.jsonl", lines)
    output = await asyncio.to_thread(the_documented_example, f"{api.base_url}/v1", path)
    results = {row["custom_id"]: row for row in map(orjson.loads, output.splitlines())}
    assert sorted(results) == sorted(line["custom_id"] for line in lines)
    async with openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key="x") as sdk:
        for line in lines:
            alone = await sdk.chat.completions.create(**line["body"])
            row = results[line["custom_id"]]
            assert row["error"] is None
            assert row["response"]["status_code"] == 200
            body = row["response"]["body"]
            assert body["choices"][0]["message"]["content"] == alone.choices[0].message.content


async def wait_final(sdk: openai.AsyncOpenAI, batch_id: str) -> Any:
    async def final() -> Any:
        batch = await sdk.batches.retrieve(batch_id)
        return batch if batch.status in ("completed", "failed", "expired", "cancelled") else None

    return await eventually(final, timeout=20, interval=0.05)


@pytest.fixture
async def sdk(api: httpx.AsyncClient) -> Any:
    async with openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key="x") as client:
        yield client


async def test_a_bad_file_fails_the_batch_naming_each_line(
    sdk: openai.AsyncOpenAI, tmp_path: Path
) -> None:
    lines: list[Any] = [request_line(1), request_line(1), request_line(2, "/v1/embeddings")]
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    with path.open("ab") as file:
        file.write(b"{not json\n")
    uploaded = await sdk.files.create(file=path.open("rb"), purpose="batch")
    created = await sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = await wait_final(sdk, created.id)
    assert batch.status == "failed"
    assert batch.errors is not None
    found = {(error.line, error.code) for error in batch.errors.data or []}
    assert found == {
        (2, "duplicate_custom_id"),
        (3, "mismatched_url"),
        (4, "invalid_json_line"),
    }


async def test_a_cancelled_batch_stops_its_lines(
    sdk: openai.AsyncOpenAI, tmp_path: Path
) -> None:  # no worker: every line stays queued until cancelled
    path = write_jsonl(tmp_path / "in.jsonl", [request_line(n) for n in range(5)])
    uploaded = await sdk.files.create(file=path.open("rb"), purpose="batch")
    created = await sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )

    async def in_progress() -> bool:
        batch = await sdk.batches.retrieve(created.id)
        return batch.status == "in_progress" and batch.request_counts is not None

    await eventually(in_progress, timeout=10)
    cancelling = await sdk.batches.cancel(created.id)
    assert cancelling.status in ("cancelling", "cancelled")
    batch = await wait_final(sdk, created.id)
    assert batch.status == "cancelled"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.failed) == (5, 5)
    assert batch.error_file_id is not None
    errors = (await sdk.files.content(batch.error_file_id)).text.splitlines()
    assert {orjson.loads(row)["error"]["code"] for row in errors} == {"cancelled"}


async def test_past_its_window_a_batch_expires_with_an_error_line_each(
    sdk: openai.AsyncOpenAI, tmp_path: Path, redis: Redis, prefix: str
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [request_line(n) for n in range(3)])
    uploaded = await sdk.files.create(file=path.open("rb"), purpose="batch")
    created = await sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )

    async def submitted() -> bool:
        return await redis.llen(Keys(prefix).batch_lines(created.id)) == 3  # type: ignore[misc]

    await eventually(submitted, timeout=10)
    await redis.hset(Keys(prefix).batch(created.id), "expires_at", 1)  # the window passed
    batch = await wait_final(sdk, created.id)
    assert batch.status == "expired"
    assert batch.error_file_id is not None
    errors = (await sdk.files.content(batch.error_file_id)).text.splitlines()
    assert [orjson.loads(row)["error"]["code"] for row in errors] == ["batch_expired"] * 3


async def test_batches_list_newest_first_with_a_cursor(
    sdk: openai.AsyncOpenAI, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [request_line(1)])
    uploaded = await sdk.files.create(file=path.open("rb"), purpose="batch")
    ids = [
        (
            await sdk.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        ).id
        for _ in range(3)
    ]
    first = await sdk.batches.list(limit=2)
    assert [batch.id for batch in first.data] == ids[::-1][:2]
    assert first.has_more
    listed = [batch.id async for batch in sdk.batches.list(limit=2)]
    assert listed == ids[::-1]


async def test_a_batch_cancelled_at_once_never_runs_its_lines(
    sdk: openai.AsyncOpenAI, api: httpx.AsyncClient, tmp_path: Path
) -> None:  # no worker: whatever was put stays queued unless cancelled
    path = write_jsonl(tmp_path / "in.jsonl", [request_line(n) for n in range(1200)])
    uploaded = await sdk.files.create(file=path.open("rb"), purpose="batch")
    created = await sdk.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"queue": "cancel-at-once"},
    )
    await sdk.batches.cancel(created.id)  # while it validates, or puts its lines
    batch = await wait_final(sdk, created.id)
    assert batch.status == "cancelled"
    stats = (await api.get("/v1/queue/cancel-at-once/stats")).json()
    if stats["code"] == 200:  # some lines were put before the cancel took hold: all stopped
        levels = stats["data"]["levels"]
        assert levels["1"]["waiting"] == 0


async def test_a_line_put_again_by_a_takeover_is_the_same_job(
    settings: Settings, tmp_path: Path
) -> None:
    app = create_app(settings)
    async with serve(app) as url, openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x") as sdk:
        path = write_jsonl(tmp_path / "in.jsonl", [request_line(n) for n in range(3)])
        uploaded = await sdk.files.create(file=path.open("rb"), purpose="batch")
        created = await sdk.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        state = app.state.queue

        async def all_put() -> list[Any]:
            return [line async for group in state.store.batches.lines(created.id) for line in group]

        lines = await eventually(lambda: all_put_if(all_put, 3), timeout=10)
        batch = await state.store.batches.load(created.id, "")
        again = await state.batch_runner._put(batch, request_line(0))  # its answer was lost
        assert again.task_id == lines[0].task_id


async def all_put_if(read: Any, count: int) -> Any:
    found = await read()
    return found if len(found) == count else None


async def test_an_ended_batch_announces_itself_at_its_webhook_unasked(
    settings: Settings, tmp_path: Path, receiver: tuple[str, CallbackReceiver]
) -> None:
    url, inbox = receiver
    hooked = settings.model_copy(
        update={"batch_webhook_url": url, "callback_secret": "webhook-secret-1"}
    )
    async with (
        serve(create_app(hooked)) as api_url,
        openai.AsyncOpenAI(base_url=f"{api_url}/v1", api_key="x") as sdk,
        running_worker(hooked) as worker,
    ):
        path = write_jsonl(tmp_path / "in.jsonl", [request_line(n) for n in range(3)])
        uploaded = await sdk.files.create(file=path.open("rb"), purpose="batch")
        created = await sdk.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )

        async def announced() -> bool:  # the worker's sweep, as its cron runs it
            await sweep_batches(worker.ctx)
            return bool(inbox.received)

        await eventually(announced, timeout=20, interval=0.2)
    (event,) = inbox.received
    assert event["type"] == "batch.completed"
    assert event["data"] == {"id": created.id}
    (headers,) = inbox.headers
    timestamp, signature = headers["x-queue-timestamp"], headers["x-queue-signature"]
    body = orjson.dumps(event)
    assert verify_callback("webhook-secret-1", body, timestamp, signature)
