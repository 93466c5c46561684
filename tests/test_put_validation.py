"""What a put refuses before anything is queued (queue_service/models.py): integers beyond 64
bits, numbers RFC 8259 JSON cannot carry, callback URLs with a bad port or a user name; and
that a callback delivery error of any kind is an attempt that ends in a dead letter."""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from queue_service.settings import Settings
from queue_service.store.keys import Keys
from tests.helpers import put, put_body, view, wait_view
from tests.servers import CallbackReceiver
from workers.dead_letters import dead_letters

from .conftest import running_worker

QUEUE = "validation"
CALLBACK = "http://127.0.0.1:9/cb"
"""Loopback (allowed in the test settings); no worker runs where it is used: never called."""

job = partial(put_body, QUEUE, CALLBACK)


async def put_raw(api: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await api.post(
        "/v1/queue/put", content=body, headers={"content-type": "application/json"}
    )


def with_literal(literal: str) -> bytes:
    """A put body whose `data.extra` is `literal` written as is (JSON or not)."""
    marker = "__LITERAL__"
    encoded = orjson.dumps(job(extra=marker))
    return encoded.replace(orjson.dumps(marker), literal.encode())


def message(response: httpx.Response) -> str:
    text: str = response.json()["message"]
    return text


# -- integers beyond 64 bits ------------------------------------------------------------


@pytest.mark.parametrize(
    "literal",
    [
        "18446744073709551616",  # 2**64
        "-9223372036854775809",  # -2**63 - 1
        "1" + "0" * 30,
        '[1, {"seed": 18446744073709551616}]',  # nested
    ],
)
async def test_an_integer_beyond_64_bits_is_refused_with_400(
    api: httpx.AsyncClient, literal: str
) -> None:
    response = await put_raw(api, with_literal(literal))
    assert response.status_code == 400, response.text
    assert "data: holds an integer beyond 64 bits; send it as a string" in message(response)


@pytest.mark.parametrize(
    "literal", ["18446744073709551615", "-9223372036854775808", "9223372036854775808"]
)
async def test_64_bit_integers_are_accepted(api: httpx.AsyncClient, literal: str) -> None:
    response = await put_raw(api, with_literal(literal))
    assert response.status_code == 200, response.text


async def test_the_largest_64_bit_integer_reaches_the_upstream_intact(
    api: httpx.AsyncClient, worker: Any, mock_upstream: tuple[str, Any]
) -> None:
    body = put_body(QUEUE, level=0, mode="blocking", seed=2**64 - 1, floor=-(2**63))
    response = await api.post("/v1/queue/put", json=body)
    assert response.status_code == 200, response.text
    (request,) = mock_upstream[1].state.mock_requests
    assert (request.body["seed"], request.body["floor"]) == (2**64 - 1, -(2**63))


# -- numbers JSON cannot carry ----------------------------------------------------------


@pytest.mark.parametrize(
    "literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", '{"t": [0.5, NaN]}']
)
async def test_a_number_json_cannot_carry_is_refused_with_400(
    api: httpx.AsyncClient, literal: str
) -> None:
    response = await put_raw(api, with_literal(literal))
    assert response.status_code == 400, response.text
    assert "data: holds a number JSON cannot carry" in message(response)


@pytest.mark.parametrize("literal", ["1e308", "-1.7976931348623157e308", "5e-324", '"NaN"'])
async def test_large_and_tiny_finite_numbers_are_accepted(
    api: httpx.AsyncClient, literal: str
) -> None:
    response = await put_raw(api, with_literal(literal))
    assert response.status_code == 200, response.text


# -- callback URLs: ports and userinfo --------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://1.1.1.2:99999/",
        "http://1.1.1.2:-1/",
        "http://1.1.1.2:abc/",
        "http://1.1.1.2:0/",
        "http://127.0.0.1:65536/cb",
    ],
)
async def test_a_callback_url_with_a_bad_port_is_refused_with_400(
    api: httpx.AsyncClient, url: str
) -> None:
    response = await api.post("/v1/queue/put", json=put_body(QUEUE, url))
    assert response.status_code == 400, response.text
    assert "callback_url: has an invalid port" in message(response)


async def test_a_bad_port_is_refused_even_after_its_host_was_accepted(
    api: httpx.AsyncClient,
) -> None:
    """Before, the host's cached verdict let the URL in (its callback then never settled)."""
    await put(api, job())
    response = await api.post("/v1/queue/put", json=put_body(QUEUE, "http://127.0.0.1:99999/cb"))
    assert response.status_code == 400, response.text
    assert "callback_url: has an invalid port" in message(response)
    response = await api.post("/v1/queue/put", json=put_body(QUEUE, "http://127.0.0.1:0/cb"))
    assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw@127.0.0.1:9/cb",
        "http://user@127.0.0.1:9/cb",
        "http://:pw@127.0.0.1:9/cb",
        "https://user:pw@1.1.1.2/cb",
    ],
)
async def test_a_callback_url_with_userinfo_is_refused_with_400(
    api: httpx.AsyncClient, url: str
) -> None:
    response = await api.post("/v1/queue/put", json=put_body(QUEUE, url))
    assert response.status_code == 400, response.text
    assert "callback_url: must not carry a user name or password" in message(response)
    assert "pw" not in message(response).replace("password", "")


async def test_an_at_sign_outside_the_host_part_is_fine(api: httpx.AsyncClient) -> None:
    await put(api, put_body(QUEUE, "http://127.0.0.1:9/cb?from=a@b.example#x@y"))


# -- callback delivery errors -----------------------------------------------------------


async def test_any_delivery_error_is_an_attempt_that_ends_in_a_dead_letter(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    """A callback URL that fails at delivery in an unforeseen way (here a port that cannot be
    parsed, written into the record behind the API's back, as one let in before the fix
    was) is retried, then given up on as a dead letter; before, it stayed pending forever."""
    task_id = await put(api, job())
    await redis.hset(
        Keys(settings.key_prefix).task(QUEUE, task_id), "callback_url", "http://127.0.0.1:99999/"
    )
    few = settings.model_copy(update={"callback_max_attempts": 2})
    async with running_worker(few):
        seen = await wait_view(
            api, task_id, lambda v: v["callback"]["status"] == "failed", timeout=8
        )
        assert await dead_letters(few, redeliver=False) == 1
    assert seen["status"] == "succeeded"
    assert seen["callback"]["attempts"] == 2
    assert "ValueError" in seen["callback"]["last_error"]


async def test_an_unsafe_destination_at_delivery_is_not_retried(
    api: httpx.AsyncClient, settings: Settings, receiver: tuple[str, CallbackReceiver]
) -> None:
    """The API let the receiver in (loopback allowed); the worker's policy refuses it: one
    attempt, then a dead letter, and nothing reaches the receiver."""
    url, inbox = receiver
    strict = Settings(**{**settings.model_dump(), "callback_allowed_networks": None})
    task_id = await put(api, put_body(QUEUE, url))
    async with running_worker(strict):
        seen = await wait_view(
            api, task_id, lambda v: v["callback"]["status"] == "failed", timeout=8
        )
        assert await dead_letters(strict, redeliver=False) == 1
    assert seen["callback"]["attempts"] == 1
    assert "refused" in seen["callback"]["last_error"]
    assert inbox.attempts == 0
    assert (await view(api, task_id))["callback"]["status"] == "failed"
