"""Anthropic's Message Batches through the official SDK (`client.messages.batches`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import pytest
from arq.worker import Worker

from tests.helpers import eventually


@pytest.fixture
async def client(api: httpx.AsyncClient) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=str(api.base_url), api_key="unused", max_retries=0
    ) as sdk:
        yield sdk


def requests(count: int) -> list[Any]:
    return [
        {
            "custom_id": f"req-{n}",
            "params": {
                "model": "claude-sonnet-4",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": f"Hello {n}"}],
            },
        }
        for n in range(count)
    ]


async def ended(client: anthropic.AsyncAnthropic, batch_id: str) -> Any:
    async def done() -> Any:
        batch = await client.messages.batches.retrieve(batch_id)
        return batch if batch.processing_status == "ended" else None

    return await eventually(done, timeout=20, interval=0.05)


async def test_a_message_batch_runs_and_gives_its_results(
    client: anthropic.AsyncAnthropic, worker: Worker
) -> None:
    created = await client.messages.batches.create(requests=requests(5))
    assert created.id.startswith("msgbatch_")
    assert created.processing_status == "in_progress"
    batch = await ended(client, created.id)
    assert batch.request_counts.succeeded == 5
    results = [entry async for entry in await client.messages.batches.results(batch.id)]
    assert sorted(entry.custom_id for entry in results) == [f"req-{n}" for n in range(5)]
    for entry in results:
        assert entry.result.type == "succeeded"
        assert entry.result.message.content[0].type == "text"  # type: ignore[union-attr]
    listed = [item.id async for item in client.messages.batches.list()]
    assert created.id in listed


async def test_a_canceled_message_batch_ends_canceled(client: anthropic.AsyncAnthropic) -> None:
    created = await client.messages.batches.create(requests=requests(3))  # no worker runs

    async def all_put() -> bool:
        batch = await client.messages.batches.retrieve(created.id)
        return batch.request_counts.processing == 3

    await eventually(all_put, timeout=10)
    await client.messages.batches.cancel(created.id)
    batch = await ended(client, created.id)
    assert batch.request_counts.canceled == 3
    results = [entry async for entry in await client.messages.batches.results(batch.id)]
    assert {entry.result.type for entry in results} == {"canceled"}


async def test_duplicate_custom_ids_are_refused(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="unique"):
        await client.messages.batches.create(requests=requests(2) + requests(1))
