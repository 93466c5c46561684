"""What a caller can learn about what exists (queue_service/api/routes.py `_visible_queue`,
store/hub.py): a key limited to some queues gets the same 404 for a queue it may not use as
for a missing one, and a put that cannot reach the store names no Redis host or port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from queue_service.api.app import create_app
from queue_service.settings import Settings
from tests.helpers import eventually, put, put_body
from tests.servers import TcpProxy, serve

KEYS = """
[[key]]
key = "limited-key-123"
tenant = "alice"
queues = ["chat"]

[[key]]
key = "admin-key-4567"
tenant = "ops"
admin = true
"""
LIMITED = {"authorization": "Bearer limited-key-123"}
ADMIN = {"authorization": "Bearer admin-key-4567"}
OTHER = {"authorization": "Bearer other-key-890"}
"""An unlimited, non-admin key of tenant `carol` (QUEUE_API_KEYS)."""
CALLBACK = "http://127.0.0.1:9/cb"
"""Loopback (allowed in the test settings); no worker runs here: never called."""


@pytest.fixture
async def keyed_api(settings: Settings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    path = tmp_path / "keys.toml"
    path.write_text(KEYS)
    keyed = settings.model_copy(
        update={"api_keys_file": str(path), "api_keys": "carol:other-key-890"}
    )
    keyed.__dict__.pop("api_key_tenants", None)  # a cached property of the copied settings
    async with serve(create_app(keyed)) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


def without_time(response: httpx.Response) -> dict[str, Any]:
    envelope: dict[str, Any] = response.json()
    envelope.pop("timestamp", None)
    return envelope


async def test_a_limited_key_gets_404_for_an_existing_queue_it_may_not_use(
    keyed_api: httpx.AsyncClient,
) -> None:
    await put(keyed_api, put_body("batch", CALLBACK), headers=ADMIN)  # "batch" exists
    await put(keyed_api, put_body("chat", CALLBACK), headers=LIMITED)
    existing = await keyed_api.get("/v1/queue/batch/stats", headers=LIMITED)
    missing = await keyed_api.get("/v1/queue/batch2/stats", headers=LIMITED)
    assert existing.status_code == 404, existing.text
    assert missing.status_code == 404
    # the same answer: nothing tells the two apart but the queue's name
    assert without_time(existing) == {"code": 404, "message": "queue batch not found"}
    assert without_time(missing) == {"code": 404, "message": "queue batch2 not found"}
    assert existing.headers.keys() == missing.headers.keys()
    # its own queue it sees; the admin sees both
    assert (await keyed_api.get("/v1/queue/chat/stats", headers=LIMITED)).status_code == 200
    for queue in ("chat", "batch"):
        assert (await keyed_api.get(f"/v1/queue/{queue}/stats", headers=ADMIN)).status_code == 200


async def test_a_limited_key_gets_404_for_its_own_queue_when_it_does_not_exist(
    keyed_api: httpx.AsyncClient,
) -> None:
    response = await keyed_api.get("/v1/queue/chat/stats", headers=LIMITED)
    assert response.status_code == 404
    assert without_time(response) == {"code": 404, "message": "queue chat not found"}


async def test_an_unlimited_key_sees_only_the_queues_its_tenant_used(
    keyed_api: httpx.AsyncClient,
) -> None:
    await put(keyed_api, put_body("batch", CALLBACK), headers=ADMIN)
    await put(keyed_api, put_body("mine", CALLBACK), headers=OTHER)
    others = await keyed_api.get("/v1/queue/batch/stats", headers=OTHER)
    assert without_time(others) == {"code": 404, "message": "queue batch not found"}
    assert (await keyed_api.get("/v1/queue/mine/stats", headers=OTHER)).status_code == 200


# -- the store unreachable ------------------------------------------------------------------


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(redis_url)
    running = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    await running.start()
    yield running
    await running.cut()


@pytest.mark.parametrize("mode", ["blocking", "streaming"])
async def test_a_waiting_put_without_the_store_gets_a_503_naming_no_redis_address(
    settings: Settings,
    proxy: TcpProxy,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    """The put's subscription to its results has to connect to Redis anew, and cannot."""
    path = urlsplit(redis_url).path or "/0"
    proxied = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{proxy.port}{path}"})
    async with serve(create_app(proxied)) as url, httpx.AsyncClient(base_url=url) as api:
        await put(api, put_body("away", CALLBACK, level=0))  # the queue is known from now on
        await proxy.cut()

        def hub_lost_its_connection() -> bool:
            return any("pub/sub connection lost" in r.getMessage() for r in caplog.records)

        await eventually(hub_lost_its_connection, timeout=5)
        response = await api.post("/v1/queue/put", json=put_body("away", level=0, mode=mode))
        await proxy.restore()
    assert response.status_code == 503, response.text
    message = response.json()["message"]
    for address in (str(proxy.port), "127.0.0.1", "localhost", "6379", "redis://"):
        assert address not in message
    assert "the queue's store is unavailable" in message
