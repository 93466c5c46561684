"""Realtime: sessions (an ephemeral key) are served like any JSON endpoint; the session
itself, a WebSocket, cannot be queued and every way in says so."""

from __future__ import annotations

import httpx
import openai
import pytest
from arq.worker import Worker

from tests.helpers import put_body


async def test_a_realtime_session_key_is_minted_through_the_queue(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    async with openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key="x") as sdk:
        session = await sdk.beta.realtime.sessions.create(
            model="gpt-4o-realtime-preview-2024-12-17", voice="verse"
        )
    assert session.client_secret.value.startswith("ek_")
    body = put_body("realtime", mode="blocking", level=0)
    body["endpoint"] = "/v1/realtime/sessions"
    body["data"] = {"model": "gpt-4o-realtime-preview-2024-12-17"}
    answer = await api.post("/v1/queue/put", json=body)
    assert answer.status_code == 200
    assert answer.json()["object"] == "realtime.session"


async def test_the_realtime_session_itself_cannot_be_queued(api: httpx.AsyncClient) -> None:
    body = put_body("realtime", "http://127.0.0.1:9/cb")
    body["endpoint"] = "/v1/realtime"
    refused = await api.post("/v1/queue/put", json=body)
    assert refused.status_code == 400
    assert "WebSocket" in refused.json()["message"]
    async with openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key="x", max_retries=0) as sdk:
        with pytest.raises(openai.BadRequestError, match="cannot hold"):
            await sdk.post("/realtime", body={}, cast_to=object)
