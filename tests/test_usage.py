"""Usage accounting end to end: jobs of two tenants on two queues (streamed ones included)
through the API, a worker and the mock upstream, read back from `GET /v1/queue/usage` (each
tenant its own, the admin all, over a window) and from `/metrics`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from queue_service.api.app import create_app
from queue_service.api.metrics import OTHER_MODELS, OTHER_QUEUES, prometheus_text
from queue_service.settings import Settings
from queue_service.store import Keys, Store
from queue_service.store.usage import UsageCounts, UsageSeries
from tests.conftest import running_worker
from tests.helpers import eventually, put_body
from tests.servers import serve

ALICE, BOB, ADMIN = "alice-key-1234", "bob-key-5678", "admin-key-9012"
ADMIN_KEY_FILE = f'[[key]]\nkey = "{ADMIN}"\ntenant = "ops"\nadmin = true\n'
MOCK = {"tokens": 4, "reasoning": "r s"}
"""Every job's answer: 3 prompt tokens ("one two three"), 4 + 2 completion, 2 of them reasoning
(reported by OpenAI-style answers only)."""


def headers(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture
async def usage_api(
    settings: Settings, mock_upstream: tuple[str, Any], tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with alice's and bob's keys and an admin key, and a worker whose routing file
    sends `/v1/messages` through a route named `claude`."""
    keys_file, routes_file = tmp_path / "keys.toml", tmp_path / "upstreams.toml"
    keys_file.write_text(ADMIN_KEY_FILE)
    route = f'name = "claude"\nendpoint = "/v1/messages"\nbase_url = "{mock_upstream[0]}"'
    routes_file.write_text(f"[[upstream]]\n{route}\n")
    routed = settings.model_copy(update={"upstreams_file": str(routes_file)})
    keyed = routed.model_copy(
        update={"api_keys": f"alice:{ALICE},bob:{BOB}", "api_keys_file": str(keys_file)}
    )
    async with (
        running_worker(routed),
        serve(create_app(keyed)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


def job(queue: str, model: str, mode: str, **data: Any) -> dict[str, Any]:
    return put_body(queue, text="one two three", level=0, mode=mode, model=model, mock=MOCK, **data)


async def blocking(api: httpx.AsyncClient, key: str, body: dict[str, Any]) -> httpx.Response:
    return await api.post("/v1/queue/put", json=body, headers=headers(key))


async def streamed(api: httpx.AsyncClient, key: str, body: dict[str, Any]) -> str:
    async with api.stream("POST", "/v1/queue/put", json=body, headers=headers(key)) as reply:
        assert reply.status_code == 200
        return (await reply.aread()).decode()


async def usage(api: httpx.AsyncClient, key: str, **params: Any) -> httpx.Response:
    return await api.get("/v1/queue/usage", params=params, headers=headers(key))


def rows(answer: httpx.Response) -> dict[tuple[str, str, str, str], tuple[int, int, int, int]]:
    assert answer.status_code == 200, answer.text
    return {
        (row["tenant"], row["queue"], row["model"], row["route"]): (
            row["requests"],
            row["prompt_tokens"],
            row["completion_tokens"],
            row["reasoning_tokens"],
        )
        for row in answer.json()["data"]["rows"]
    }


ALICE_ROWS = {
    ("alice", "chat", "m1", "default"): (2, 6, 12, 4),
    ("alice", "stream", "m1", "default"): (1, 3, 6, 2),
}
BOB_ROWS = {
    ("bob", "chat", "m2", "default"): (1, 3, 6, 2),
    ("bob", "stream", "claude-x", "claude"): (1, 3, 6, 0),
}


async def test_usage_is_counted_per_tenant_queue_model_and_route(
    usage_api: httpx.AsyncClient,
) -> None:
    api = usage_api
    for _ in range(2):
        assert (await blocking(api, ALICE, job("chat", "m1", "blocking"))).status_code == 200
    openai_stream = job("stream", "m1", "streaming", stream_options={"include_usage": True})
    assert '"usage":{"prompt_tokens":3' in await streamed(api, ALICE, openai_stream)
    assert (await blocking(api, BOB, job("chat", "m2", "blocking"))).status_code == 200
    failing = job("chat", "m2", "blocking", max_tokens=10)
    failing["data"]["mock"] = {"status": 400}
    assert (await blocking(api, BOB, failing)).status_code == 400  # no answer: not counted
    anthropic_stream = job("stream", "claude-x", "streaming", max_tokens=100)
    anthropic_stream["endpoint"] = "/v1/messages"
    assert "message_delta" in await streamed(api, BOB, anthropic_stream)

    async def all_counted() -> httpx.Response | None:
        answer = await usage(api, ADMIN)
        return answer if answer.json()["data"]["totals"]["requests"] == 5 else None

    everyone = await eventually(all_counted, what="five jobs in the usage")
    assert rows(everyone) == ALICE_ROWS | BOB_ROWS
    assert everyone.json()["data"]["totals"] == {
        "requests": 5,
        "prompt_tokens": 15,
        "completion_tokens": 30,
        "reasoning_tokens": 8,
    }
    assert rows(await usage(api, ALICE)) == ALICE_ROWS
    assert rows(await usage(api, ALICE, tenant="alice")) == ALICE_ROWS
    assert rows(await usage(api, BOB)) == BOB_ROWS
    assert rows(await usage(api, BOB, queue="stream")) == {
        key: value for key, value in BOB_ROWS.items() if key[1] == "stream"
    }
    assert rows(await usage(api, ADMIN, tenant="bob")) == BOB_ROWS
    refused = await usage(api, ALICE, tenant="bob")
    assert refused.status_code == 403
    assert "bob" not in refused.text

    exposition = (await api.get("/metrics", headers=headers(ADMIN))).text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    claude = {"tenant": "bob", "queue": "stream", "model": "claude-x", "route": "claude"}
    alice_chat = {"tenant": "alice", "queue": "chat", "model": "m1", "route": "default"}
    for name, labels, value in [
        ("queue_usage_requests_total", claude, 1),
        ("queue_tokens_total", {**claude, "kind": "prompt"}, 3),
        ("queue_tokens_total", {**claude, "kind": "completion"}, 6),
        ("queue_usage_requests_total", alice_chat, 2),
        ("queue_tokens_total", {**alice_chat, "kind": "reasoning"}, 4),
    ]:
        assert samples[(name, tuple(sorted(labels.items())))] == value


async def test_the_window_and_bad_parameters(usage_api: httpx.AsyncClient) -> None:
    api = usage_api
    first_hour = int(time.time() // 3600 * 3600)
    assert (await blocking(api, ALICE, job("chat", "m1", "blocking"))).status_code == 200

    async def counted() -> dict[Any, Any] | None:
        return rows(await usage(api, ALICE)) or None

    assert await eventually(counted, what="the job in the usage") == {
        ("alice", "chat", "m1", "default"): (1, 3, 6, 2)
    }
    now = time.time()
    last_hour = int(now // 3600 * 3600)  # the job was counted in one of these hours
    iso = datetime.fromtimestamp(first_hour, UTC).isoformat()
    inside = await usage(api, ALICE, **{"from": iso, "to": str(now)})
    assert len(rows(inside)) == 1
    assert inside.json()["data"]["from"] == first_hour
    assert inside.json()["data"]["to"] == last_hour + 3600  # whole hours
    naive_utc = datetime.fromtimestamp(first_hour, UTC).replace(tzinfo=None).isoformat()
    earlier = {"from": str(first_hour - 7200), "to": naive_utc}  # a time without zone is UTC
    assert rows(await usage(api, ALICE, **earlier)) == {}
    later = {"from": f"{last_hour + 3600}", "to": f"{last_hour + 7200}.5"}
    assert rows(await usage(api, ALICE, **later)) == {}

    for params, message in [
        ({"from": "yesterday"}, "'from' must be epoch seconds or an ISO-8601 time"),
        ({"to": "-5"}, "'to' must be epoch seconds"),
        ({"from": str(now), "to": str(now - 60)}, "'from' must be before 'to'"),
        ({"queue": "no such/queue"}, "'queue' must be a queue name"),
    ]:
        answer = await usage(api, ALICE, **params)
        assert answer.status_code == 400, params
        assert message in answer.json()["message"]
    assert (await usage(api, ALICE, queue="chat")).status_code == 200
    assert (await api.get("/v1/queue/usage")).status_code == 401


async def test_metrics_sum_the_less_used_models_and_queues_under_other(
    redis: Redis, prefix: str, redis_url: str
) -> None:
    store = Store(redis, Keys(prefix), redis_url=redis_url, retention_s=60)
    await store.queues.register("busy")
    now = time.time()
    for queue, model, tokens in [("busy", "big", 100), ("busy", "s1", 1), ("gone", "s2", 2)]:
        series = UsageSeries("t", queue, model, "default")
        await store.usage.record(series, UsageCounts(1, tokens, tokens, 0), now)

    exposition = (await prometheus_text(store, top_queues=1, top_models=1)).decode()
    prompt = {
        (sample.labels["queue"], sample.labels["model"]): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "queue_tokens_total" and sample.labels["kind"] == "prompt"
    }
    assert prompt == {
        ("busy", "big"): 100,
        ("busy", OTHER_MODELS): 1,
        (OTHER_QUEUES, OTHER_MODELS): 2,
    }
