"""Callers' own upstream keys (`QUEUE_UPSTREAM_AUTH=passthrough`, queue_service/api/auth.py):
a key that cannot travel upstream as header text (visible ASCII only) is refused at put with
a 400 that names its header and never echoes the key, and no log line carries it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from queue_service.api.app import create_app
from queue_service.settings import Settings
from tests.helpers import put, put_body
from tests.servers import serve

SECRET = b"secret-part-7f3a"
"""In every key below: never in an answer or a log line."""


@pytest.fixture
async def passthrough_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    passthrough = Settings(
        **{**settings.model_dump(), "upstream_auth": "passthrough", "secret_key": "server-secret"}
    )
    async with serve(create_app(passthrough)) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


def job() -> dict[str, object]:
    """A callback job (no worker runs: it only waits)."""
    return put_body("keys", "http://127.0.0.1:9/cb")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-upstream-api-key", b"sk-\xe9" + SECRET),  # latin-1 e-acute
        ("x-upstream-api-key", b"sk-\xc3\xa9" + SECRET),  # e-acute in UTF-8
        ("x-upstream-api-key", b"sk-" + SECRET + b" and-more"),  # a space inside
        ("x-upstream-api-key", b"sk-\xa0" + SECRET),  # no-break space
        ("authorization", b"Bearer sk-\xe9" + SECRET),
    ],
)
async def test_a_key_that_is_not_visible_ascii_is_refused_without_echoing_it(
    passthrough_api: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    header: str,
    value: bytes,
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await passthrough_api.post("/v1/queue/put", json=job(), headers={header: value})
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert f"'{header}'" in message
    assert "visible ASCII" in message
    for shown in (response.text, caplog.text, *(str(r.args) for r in caplog.records)):
        assert SECRET.decode() not in shown
        assert "sk-" not in shown


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-upstream-api-key", b"sk-" + SECRET),
        ("authorization", b"Bearer sk-" + SECRET + b"~!"),
    ],
)
async def test_a_visible_ascii_key_is_accepted(
    passthrough_api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, header: str, value: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    await put(passthrough_api, job(), headers={header: value})
    assert SECRET.decode() not in caplog.text


async def test_a_put_without_any_key_is_still_401(passthrough_api: httpx.AsyncClient) -> None:
    response = await passthrough_api.post("/v1/queue/put", json=job())
    assert response.status_code == 401
    assert "x-upstream-api-key" in response.json()["message"]
