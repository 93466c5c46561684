"""The official `openai` SDK against the queue's drop-in routes: only `base_url` changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from arq.worker import Worker
from redis.asyncio import Redis

from queue_service.api.app import create_app
from queue_service.settings import Settings
from queue_service.store import TaskId
from tests.helpers import eventually
from tests.servers import serve

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
async def client(api: httpx.AsyncClient) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{api.base_url}/v1", api_key="unused-no-keys", max_retries=0
    ) as sdk:
        yield sdk


async def test_a_chat_completion_is_an_ordinary_task(
    client: openai.AsyncOpenAI, api: httpx.AsyncClient, worker: Worker
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="deepseek-chat", messages=MESSAGES, extra_headers={"X-Queue": "sdk"}
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content
    task_id = raw.headers["x-task-id"]
    parsed = TaskId.parse(task_id)
    assert parsed is not None
    assert parsed.level == 0
    view = (await api.get(f"/v1/queue/{task_id}")).json()["data"]
    assert (view["queue"], view["status"], view["response_mode"]) == (
        "sdk",
        "succeeded",
        "blocking",
    )


async def test_streams_relay_text_reasoning_and_tool_calls(
    client: openai.AsyncOpenAI, worker: Worker
) -> None:
    stream = await client.chat.completions.create(
        model="deepseek-r1",
        messages=MESSAGES,
        stream=True,
        extra_body={"mock": {"reasoning": "thinking it over", "reply": "hello there"}},
    )
    text, reasoning = "", ""
    async for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            text += delta.content or ""
            reasoning += getattr(delta, "reasoning_content", None) or ""
    assert text == "hello there"
    assert reasoning == "thinking it over"

    calls = await client.chat.completions.create(
        model="m",
        messages=MESSAGES,
        stream=True,
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
        extra_body={"mock": {"tool_call": {"name": "lookup", "arguments": '{"q": "x"}'}}},
    )
    name, arguments = "", ""
    async for chunk in calls:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name += call.function.name or "" if call.function else ""
            arguments += call.function.arguments or "" if call.function else ""
    assert (name, arguments) == ("lookup", '{"q": "x"}')


async def test_embeddings(client: openai.AsyncOpenAI, worker: Worker) -> None:
    answer = await client.embeddings.create(model="text-embedding-3", input=["a", "b"])
    assert len(answer.data) == 2
    assert len(answer.data[0].embedding) > 0


async def test_models_lists_the_default_upstreams_models(client: openai.AsyncOpenAI) -> None:
    models = [model.id async for model in client.models.list()]
    assert "deepseek-r1" in models


async def test_errors_are_the_sdks_own_typed_exceptions(
    client: openai.AsyncOpenAI, worker: Worker
) -> None:
    with pytest.raises(openai.BadRequestError) as offline:
        await client.chat.completions.create(
            model="m", messages=MESSAGES, extra_headers={"X-Queue-Level": "1"}
        )
    assert "X-Queue-Level" in offline.value.message
    with pytest.raises(openai.BadRequestError) as upstream:  # the upstream's own refusal
        await client.chat.completions.create(
            model="m", messages=MESSAGES, extra_body={"mock": {"status": 400}}
        )
    assert upstream.value.status_code == 400
    with pytest.raises(openai.RateLimitError) as limited:
        await client.chat.completions.create(
            model="m", messages=MESSAGES, extra_body={"mock": {"status": 429}}
        )
    assert limited.value.status_code == 429


KEYS = """
[[key]]
key = "limited-key-1"
tenant = "team"
rate = 1
burst = 1
default_queue = "team-chat"
"""


@pytest.fixture
async def keyed(settings: Settings, tmp_path: Path) -> AsyncIterator[str]:
    path = tmp_path / "keys.toml"
    path.write_text(KEYS)
    keyed = settings.model_copy(update={"api_keys_file": str(path)})
    async with serve(create_app(keyed)) as url:
        yield url


async def test_keys_and_the_services_own_limits(
    keyed: str, worker: Worker, redis: Redis, prefix: str
) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{keyed}/v1", api_key="wrong-key-000", max_retries=0
    ) as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.chat.completions.create(model="m", messages=MESSAGES)
    async with openai.AsyncOpenAI(
        base_url=f"{keyed}/v1", api_key="limited-key-1", max_retries=0
    ) as team:
        raw = await team.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError) as limited:  # one request a second
            await team.chat.completions.create(model="m", messages=MESSAGES)
    assert limited.value.response.headers["retry-after"]
    assert limited.value.body == {
        "message": "rate limit of 1 requests/s exceeded",
        "type": "rate_limit_error",
        "param": None,
        "code": None,
    }
    task_key = f"{prefix}:{{team-chat}}:task:{raw.headers['x-task-id']}"  # the key's queue
    assert await redis.hget(task_key, "status") == b"succeeded"


async def test_a_client_timeout_cancels_the_job(
    client: openai.AsyncOpenAI, api: httpx.AsyncClient, worker: Worker, redis: Redis, prefix: str
) -> None:
    with pytest.raises(openai.APITimeoutError):
        await client.with_options(timeout=1.0).chat.completions.create(
            model="m",
            messages=MESSAGES,
            extra_headers={"X-Queue": "timeouts"},
            extra_body={"mock": {"hang": True}},
        )

    async def cancelled() -> bool:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:{{timeouts}}:task:*")]
        return len(keys) == 1 and await redis.hget(keys[0], "status") == b"cancelled"

    await eventually(cancelled, timeout=5)
