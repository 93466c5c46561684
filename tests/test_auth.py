"""Bearer keys and tenants: no key, a wrong key, and another tenant's task."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from queue_service.api.app import create_app
from queue_service.settings import Settings
from tests.servers import serve

JOB = {
    "queue": "auth",
    "endpoint": "/v1/chat/completions",
    "level": 1,
    "data": {"model": "m", "messages": []},
    "callback_url": "http://127.0.0.1:9/cb",
}


@pytest.fixture
async def locked_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    keyed = settings.model_copy(update={"api_keys": "alice:key-a, bob:key-b,plain-key"})
    async with serve(create_app(keyed)) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_key_entries_map_to_tenants() -> None:
    settings = Settings(api_keys="alice:k1,k2, ,team:x:k3")
    assert settings.api_key_tenants == {"k1": "alice", "k2": "default", "k3": "team:x"}


@pytest.mark.parametrize(
    "headers", [{}, bearer("wrong"), {"authorization": "Basic key-a"}, {"authorization": "Bearer"}]
)
async def test_missing_or_wrong_keys_get_401(
    locked_api: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for response in [
        await locked_api.post("/v1/queue/put", json=JOB, headers=headers),
        await locked_api.get("/v1/queue/TASK-1-1-C-260101000000-0001-000001", headers=headers),
    ]:
        assert response.status_code == 401
        assert "API key" in response.json()["message"]


async def test_a_tenant_cannot_see_or_cancel_another_tenants_task(
    locked_api: httpx.AsyncClient,
) -> None:
    response = await locked_api.post("/v1/queue/put", json=JOB, headers=bearer("key-a"))
    assert response.status_code == 200
    task_id = response.json()["data"]

    assert (await locked_api.get(f"/v1/queue/{task_id}", headers=bearer("key-a"))).is_success
    for key in ("key-b", "plain-key"):
        assert (
            await locked_api.get(f"/v1/queue/{task_id}", headers=bearer(key))
        ).status_code == 404
        cancel = await locked_api.post(f"/v1/queue/{task_id}/cancel", headers=bearer(key))
        assert cancel.status_code == 404
    mine = await locked_api.post(f"/v1/queue/{task_id}/cancel", headers=bearer("key-a"))
    assert mine.json()["data"]["status"] == "cancelled"
