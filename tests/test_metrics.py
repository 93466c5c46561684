"""`/metrics`: protected when keys are on, and bounded however many queues there are."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from queue_service.api.app import create_app
from queue_service.api.metrics import OTHER_QUEUES
from queue_service.settings import Settings
from tests.helpers import put, put_body
from tests.servers import serve

KEYS = """
[[key]]
key = "user-key-1234"
tenant = "user"

[[key]]
key = "admin-key-5678"
tenant = "ops"
admin = true
"""


@pytest.fixture
async def keyed_api(settings: Settings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    path = tmp_path / "keys.toml"
    path.write_text(KEYS)
    keyed = settings.model_copy(
        update={"api_keys_file": str(path), "metrics_token": "scrape-token-9999"}
    )
    async with serve(create_app(keyed)) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_with_keys_on_only_an_admin_key_or_the_scrape_token_reads_metrics(
    keyed_api: httpx.AsyncClient,
) -> None:
    await put(
        keyed_api,
        put_body("secret-queue", "http://127.0.0.1:9/cb"),
        headers=bearer("user-key-1234"),
    )
    nobody = await keyed_api.get("/metrics")
    assert nobody.status_code == 401
    user = await keyed_api.get("/metrics", headers=bearer("user-key-1234"))
    assert user.status_code == 403
    assert "secret-queue" not in user.text
    wrong_token = await keyed_api.get("/metrics", headers=bearer("scrape-token-0000"))
    assert wrong_token.status_code == 401
    for allowed in ("admin-key-5678", "scrape-token-9999"):
        response = await keyed_api.get("/metrics", headers=bearer(allowed))
        assert response.status_code == 200
        assert 'queue="secret-queue"' in response.text


def series(text: str, name: str) -> dict[str, float]:
    """queue label -> value of a metric's series (summed over its other labels)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if match:
            queue = re.search(r'queue="([^"]*)"', match.group(1))
            assert queue is not None
            found[queue.group(1)] = found.get(queue.group(1), 0.0) + float(match.group(2))
    return found


async def test_only_the_busiest_queues_get_series_of_their_own(
    settings: Settings,
) -> None:
    bounded = settings.model_copy(update={"metrics_top_queues": 2})
    puts = {"q-a": 5, "q-b": 4, "q-c": 1, "q-d": 1, "q-e": 2}
    async with serve(create_app(bounded)) as url, httpx.AsyncClient(base_url=url) as api:
        for queue, count in puts.items():
            for _ in range(count):
                await put(api, put_body(queue, "http://127.0.0.1:9/cb"))
        text = (await api.get("/metrics")).text
    waiting = series(text, "queue_waiting_jobs")
    assert set(waiting) == {"q-a", "q-b", OTHER_QUEUES}
    assert waiting == {"q-a": 5, "q-b": 4, OTHER_QUEUES: 4}  # no worker runs: all still wait
    assert series(text, "queue_put_total") == {"q-a": 5, "q-b": 4, OTHER_QUEUES: 4}
