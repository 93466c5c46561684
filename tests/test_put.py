"""`POST /v1/queue/put` over a real socket: accepted jobs land in Redis, bad input gets 4xx."""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from queue_service.settings import Settings
from queue_service.store.ids import TaskId
from queue_service.store.keys import Keys

CHAT = {"model": "deepseek-r1", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def job(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "queue": "test-queue",
        "endpoint": "/v1/chat/completions",
        "level": 1,
        "data": CHAT,
        "callback_url": "http://127.0.0.1:9/callback",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def test_callback_put_answers_a_task_id_and_enqueues_atomically(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    response = await api.post("/v1/queue/put", json=job())
    assert response.status_code == 200
    answer = response.json()
    assert answer["code"] == 200
    assert isinstance(answer["timestamp"], int)
    assert re.fullmatch(r"TASK-\d+-1-C-\d{12}-\d{4}-\d{6}", answer["data"])

    keys = Keys(settings.key_prefix)
    record = await redis.hgetall(keys.task("test-queue", answer["data"]))
    assert record[b"status"] == b"queued"
    assert orjson.loads(record[b"data"]) == CHAT
    entries = await redis.xrange(keys.stream("test-queue", 1))
    assert [fields[b"task"].decode() for _, fields in entries] == [answer["data"]]
    assert entries[0][0] == record[b"entry"]


async def test_queue_ids_are_assigned_once_per_name(api: httpx.AsyncClient) -> None:
    ids = []
    for queue in ["a", "b", "a", "b", "a"]:
        response = await api.post("/v1/queue/put", json=job(queue=queue))
        task_id = TaskId.parse(response.json()["data"])
        assert task_id is not None
        ids.append(task_id.queue_id)
    assert ids[0] == ids[2] == ids[4] != ids[1] == ids[3]


async def test_level_zero_callback_is_accepted(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/queue/put", json=job(level=0))
    assert response.status_code == 200
    assert "-0-C-" in response.json()["data"]


async def test_the_seed_callback_example_with_its_trailing_comma_says_where(
    api: httpx.AsyncClient,
) -> None:
    body = (
        b'{\n  "queue": "test-queue",\n  "endpoint": "/v1/chat/completions",\n  "level": 1,\n'
        b'  "data": {"model": "m", "messages": [], "stream": false},\n'
        b'  "callback_url": "http://localhost:8081/test/callback",\n  }'
    )
    response = await api.post(
        "/v1/queue/put", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    message = response.json()["message"]
    assert "not valid JSON" in message
    assert "trailing comma" in message
    assert "line 7" in message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (job(queue=None), "queue: field required"),
        (job(endpoint=None), "endpoint: field required"),
        (job(level=None), "level: field required"),
        (job(data=None), "data: field required"),
        (job(level=2), "level must be 0 (online) or 1 (offline)"),
        (job(level="1"), "level: Input should be a valid integer"),
        (job(level=True), "level: Input should be a valid integer"),
        (job(queue=5), "queue: Input should be a valid string"),
        (job(queue="bad queue{}"), "queue: String should match pattern"),
        (job(data=[1, 2]), "data: Input should be an object"),
        (job(endpoint="/v1/nope"), "endpoint '/v1/nope' is not served"),
        (job(callback_url=None), "callback_url is required"),
        (job(callback_url="ftp://x/y"), "callback_url: Value error, must be an absolute"),
        (job(callback_url="not a url"), "must be an absolute http"),
        (job(timeout=0), "timeout must be a positive"),
        (job(timeout=-5), "timeout must be a positive"),
        (job(timeout=10**9), "timeout must be at most"),
        (job(timeout=2.5), "timeout: Input should be a valid integer"),
        (job(response_mode="sideways"), "response_mode: Input should be"),
        (job(level=1, response_mode="blocking"), "only available on level 0"),
        (job(level=1, response_mode="streaming"), "only available on level 0"),
        (job(surprise=1), "surprise: unknown field"),
    ],
)
async def test_bad_fields_get_400_with_a_message(
    api: httpx.AsyncClient, body: dict[str, Any], fragment: str
) -> None:
    response = await api.post("/v1/queue/put", json=body)
    assert response.status_code == 400, response.text
    envelope = response.json()
    assert envelope["code"] == 400
    assert fragment.replace("Value error, ", "") in envelope["message"]
    assert isinstance(envelope["timestamp"], int)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"queue": ', "not valid JSON"),
    ],
)
async def test_bodies_that_are_not_json_objects_get_400(
    api: httpx.AsyncClient, raw: bytes, fragment: str
) -> None:
    response = await api.post(
        "/v1/queue/put", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert fragment in response.json()["message"]


async def test_non_json_content_type_gets_415(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/queue/put", data={"queue": "q"})
    assert response.status_code == 415
    assert "application/json" in response.json()["message"]


async def test_oversize_body_gets_413(settings: Settings) -> None:
    from queue_service.api.app import create_app
    from tests.servers import serve

    small = settings.model_copy(update={"max_body_bytes": 1000})
    async with serve(create_app(small)) as url, httpx.AsyncClient(base_url=url) as client:
        big = job(data={"model": "m", "messages": [{"role": "user", "content": "x" * 2000}]})
        response = await client.post("/v1/queue/put", json=big)
        assert response.status_code == 413
        assert "1000 bytes" in response.json()["message"]

        async def chunks() -> Any:  # no Content-Length: the limit holds while streaming
            for _ in range(3):
                yield b"x" * 600

        response = await client.post(
            "/v1/queue/put", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413


async def test_unknown_routes_and_methods_use_the_envelope(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/queue/put")
    assert response.status_code in (404, 405)
    assert response.json()["code"] == response.status_code
    response = await api.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["message"]
