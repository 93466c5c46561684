"""The official `anthropic` SDK against the queue's `/v1/messages`: only `base_url` changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from arq.worker import Worker

from queue_service.api.app import create_app
from queue_service.settings import Settings
from tests.servers import serve

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
async def client(api: httpx.AsyncClient) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=str(api.base_url), api_key="unused-no-keys", max_retries=0
    ) as sdk:
        yield sdk


async def test_a_message_is_an_ordinary_task(
    client: anthropic.AsyncAnthropic, api: httpx.AsyncClient, worker: Worker
) -> None:
    raw = await client.messages.with_raw_response.create(
        model="claude-sonnet-4", max_tokens=64, messages=MESSAGES
    )
    message = await raw.parse()
    assert message.type == "message"
    assert message.content[0].type == "text"
    view = (await api.get(f"/v1/queue/{raw.headers['x-task-id']}")).json()["data"]
    assert (view["endpoint"], view["status"]) == ("/v1/messages", "succeeded")


async def test_a_stream_relays_thinking_and_text(
    client: anthropic.AsyncAnthropic, worker: Worker
) -> None:
    async with client.messages.stream(
        model="claude-sonnet-4",
        max_tokens=256,
        messages=MESSAGES,
        thinking={"type": "enabled", "budget_tokens": 128},
        extra_body={"mock": {"reasoning": "let me think", "reply": "hello there"}},
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "hello there"
    kinds = [block.type for block in final.content]
    assert kinds == ["thinking", "text"]


async def test_errors_are_the_sdks_own_typed_exceptions(
    client: anthropic.AsyncAnthropic, worker: Worker
) -> None:
    with pytest.raises(anthropic.BadRequestError) as offline:
        await client.messages.create(
            model="m", max_tokens=16, messages=MESSAGES, extra_headers={"X-Queue-Level": "1"}
        )
    assert offline.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": offline.value.body["error"]["message"],
        },  # type: ignore[index]
    }
    with pytest.raises(anthropic.RateLimitError):  # the upstream's own 429, passed through
        await client.messages.create(
            model="m", max_tokens=16, messages=MESSAGES, extra_body={"mock": {"status": 429}}
        )


@pytest.fixture
async def keyed(settings: Settings, tmp_path: Path) -> AsyncIterator[str]:
    path = tmp_path / "keys.toml"
    path.write_text('[[key]]\nkey = "anthropic-style-1"\ntenant = "team"\n')
    keyed = settings.model_copy(update={"api_keys_file": str(path)})
    async with serve(create_app(keyed)) as url:
        yield url


async def test_the_x_api_key_header_authenticates(keyed: str, worker: Worker) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=keyed, api_key="anthropic-style-1", max_retries=0
    ) as team:
        message = await team.messages.create(model="m", max_tokens=16, messages=MESSAGES)
        assert message.type == "message"
    async with anthropic.AsyncAnthropic(base_url=keyed, api_key="wrong-000", max_retries=0) as who:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            await who.messages.create(model="m", max_tokens=16, messages=MESSAGES)
    assert refused.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid API key"},
    }
