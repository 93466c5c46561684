"""Priority: online work is taken before any waiting offline work."""

from __future__ import annotations

import asyncio
from functools import partial

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from queue_service.settings import Settings
from tests.helpers import eventually, put, put_body
from tests.servers import CallbackReceiver, serve

from .conftest import running_worker


class GatedUpstream:
    """An OpenAI-style upstream that holds every request until the gate opens."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.order: list[str] = []

    def app(self) -> Starlette:
        async def chat(request: Request) -> Response:
            body = orjson.loads(await request.body())
            self.order.append(body["messages"][0]["content"])
            await self.gate.wait()
            reply = {"object": "chat.completion", "choices": [{"message": {"content": "ok"}}]}
            return Response(orjson.dumps(reply), media_type="application/json")

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])

    async def wait_for(self, count: int) -> None:
        await eventually(lambda: len(self.order) >= count, timeout=10, interval=0.01)


job = partial(put_body, "prio")


@pytest.mark.parametrize("reserved", [0, 1])
async def test_online_job_starts_before_every_waiting_offline_job(
    api: httpx.AsyncClient,
    settings: Settings,
    receiver: tuple[str, CallbackReceiver],
    reserved: int,
) -> None:
    url, inbox = receiver
    offline_slots = 3
    upstream = GatedUpstream()
    async with serve(upstream.app()) as upstream_url:
        tuned = settings.model_copy(
            update={
                "upstream_url": upstream_url,
                "concurrency": offline_slots + reserved,
                "online_reserved_slots": reserved,
            }
        )
        async with running_worker(tuned):
            for n in range(offline_slots + 200):
                await put(api, job(url, level=1, text=f"offline {n}"))
            await upstream.wait_for(offline_slots)  # offline slots full, 200 waiting
            await asyncio.sleep(0.2)  # deliberate: no more offline job starts meanwhile
            assert len(upstream.order) == offline_slots

            await put(api, job(url, level=0, text="online"))
            if reserved:  # a reserved slot takes it at once, while offline slots stay full
                await upstream.wait_for(offline_slots + 1)
            upstream.gate.set()
            await inbox.wait_for(offline_slots + 201, timeout=30)

    assert len(upstream.order) == offline_slots + 201
    assert upstream.order.index("online") == offline_slots
    waiting = sorted(upstream.order[offline_slots + 1 :])
    assert waiting == sorted(f"offline {n}" for n in range(offline_slots, offline_slots + 200))
