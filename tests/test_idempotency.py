"""`Idempotency-Key` on put: a retried put never creates a second job."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from queue_service.api.app import create_app
from queue_service.settings import Settings
from queue_service.store.keys import Keys
from tests.helpers import put, put_body
from tests.servers import serve

CALLBACK = "http://127.0.0.1:9/cb"


def key(value: str) -> dict[str, str]:
    return {"idempotency-key": value}


async def puts_counted(api: httpx.AsyncClient, queue: str) -> int:
    stats = (await api.get(f"/v1/queue/{queue}/stats")).json()["data"]
    return int(stats["totals"].get("put", 0))


async def test_the_same_request_with_the_same_key_answers_the_first_task(
    api: httpx.AsyncClient,
) -> None:
    body = put_body("idem", CALLBACK, text="once")
    first = await put(api, body, headers=key("order-1"))
    reordered = {name: body[name] for name in reversed(body)}  # same request, other JSON
    again = await put(api, reordered, headers=key("order-1"))
    assert again == first
    assert await puts_counted(api, "idem") == 1
    other = await put(api, body, headers=key("order-2"))
    assert other != first
    assert await puts_counted(api, "idem") == 2


async def test_the_same_key_with_another_request_is_a_conflict(api: httpx.AsyncClient) -> None:
    first = await put(api, put_body("idem", CALLBACK, text="one"), headers=key("k"))
    response = await api.post(
        "/v1/queue/put", json=put_body("idem", CALLBACK, text="two"), headers=key("k")
    )
    assert response.status_code == 409
    assert first in response.json()["message"]
    assert await puts_counted(api, "idem") == 1


async def test_a_waiting_mode_put_sent_again_points_at_the_first_task(
    api: httpx.AsyncClient,
) -> None:
    body = put_body("idem", mode="blocking", level=0, timeout=30)
    with pytest.raises(httpx.ReadTimeout):  # no worker runs: the client gives up waiting
        await api.post("/v1/queue/put", json=body, headers=key("b"), timeout=0.5)
    again = await api.post("/v1/queue/put", json=body, headers=key("b"))
    assert again.status_code == 409
    assert again.headers["x-task-id"] in again.json()["message"]


async def test_keys_belong_to_their_tenant_and_expire_with_the_task(
    settings: Settings, tmp_path: Path, redis: Redis, prefix: str
) -> None:
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text(
        '[[key]]\nkey = "alice-key-1"\ntenant = "alice"\n\n[[key]]\nkey = "bob-key-22"\n'
        'tenant = "bob"\n'
    )
    keyed = settings.model_copy(update={"api_keys_file": str(keys_file)})
    async with serve(create_app(keyed)) as url, httpx.AsyncClient(base_url=url) as api:
        body = put_body("idem", CALLBACK, timeout=60)
        alice = await put(api, body, headers={"authorization": "Bearer alice-key-1", **key("x")})
        bob = await put(api, body, headers={"authorization": "Bearer bob-key-22", **key("x")})
    assert alice != bob
    record_ttl = await redis.pttl(Keys(prefix).task("idem", alice))
    (stored,) = [k async for k in redis.scan_iter(match=f"{prefix}:{{idem}}:idempotency:*")][:1]
    assert abs(await redis.pttl(stored) - record_ttl) < 2_000


@pytest.mark.parametrize("bad", ["", "x" * 256, "caf\u00e9"])
async def test_a_malformed_key_is_refused(api: httpx.AsyncClient, bad: str) -> None:
    response = await api.post(
        "/v1/queue/put",
        json=put_body("idem", CALLBACK),
        headers={"idempotency-key": bad.encode("latin-1")},  # type: ignore[dict-item]
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["message"]
