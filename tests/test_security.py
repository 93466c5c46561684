"""Security: SSRF-safe callbacks, signed callbacks, keys file (queues, rate), input limits."""

from __future__ import annotations

import ipaddress
import re
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from queue_service.api.app import create_app
from queue_service.api.auth import Authenticator, KeyFileError
from queue_service.outbound import CallbackPolicy, UnsafeDestination, parse_networks
from queue_service.settings import Settings
from queue_service.signing import signature_headers, verify_callback
from queue_service.store.keys import Keys
from tests.helpers import eventually, put, put_body, wait_view
from tests.servers import CallbackReceiver, serve

from .conftest import running_worker


def job(callback_url: str, queue: str = "secure", **data: Any) -> dict[str, Any]:
    return put_body(queue, callback_url, **data)


@pytest.fixture
async def strict_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API with the default outbound policy (no network opened)."""
    strict = Settings(**{**settings.model_dump(), "callback_allowed_networks": None})
    async with serve(create_app(strict)) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8081/cb",
        "http://localhost:8081/cb",
        "http://10.1.2.3/cb",
        "http://192.168.0.10/cb",
        "http://172.16.5.4/cb",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/cb",
        "http://[::ffff:127.0.0.1]/cb",
        "http://224.0.0.1/cb",
        "http://0.0.0.0/cb",
    ],
)
async def test_callbacks_to_inner_addresses_are_refused_at_put(
    strict_api: httpx.AsyncClient, url: str
) -> None:
    response = await strict_api.post("/v1/queue/put", json=job(url))
    assert response.status_code == 400
    assert "refused" in response.json()["message"]


async def test_a_public_address_is_accepted(strict_api: httpx.AsyncClient) -> None:
    response = await strict_api.post("/v1/queue/put", json=job("https://93.184.215.14/cb"))
    assert response.status_code == 200


def test_allowed_networks_open_chosen_ranges() -> None:
    policy = CallbackPolicy(parse_networks("127.0.0.0/8, 10.0.0.0/24"))
    assert policy.address_allowed(ipaddress.ip_address("127.0.0.1"))
    assert policy.address_allowed(ipaddress.ip_address("10.0.0.7"))
    assert not policy.address_allowed(ipaddress.ip_address("10.0.1.7"))
    assert not policy.address_allowed(ipaddress.ip_address("169.254.169.254"))
    with pytest.raises(ValidationError, match="does not appear to be an IPv4 or IPv6 network"):
        Settings(callback_allowed_networks="10.0.0.0/33")


async def test_a_name_resolving_to_loopback_is_refused_at_delivery_time(
    api: httpx.AsyncClient, settings: Settings, receiver: tuple[str, CallbackReceiver]
) -> None:
    """The API (as when DNS answered differently then) let it in; the worker checks again."""
    url, inbox = receiver
    named = url.replace("127.0.0.1", "localhost")
    strict = Settings(**{**settings.model_dump(), "callback_allowed_networks": None})
    async with running_worker(strict):
        task_id = await put(api, job(named))
        view = await wait_view(api, task_id, callback_failed, timeout=10)
    assert view["callback"]["status"] == "failed"
    assert "resolves to 127.0.0.1" in view["callback"]["last_error"]
    assert inbox.received == []


def callback_failed(view: dict[str, Any]) -> bool:
    return bool(view["callback"]["status"] == "failed")


async def test_redirects_are_not_followed(
    api: httpx.AsyncClient, worker: Any, receiver: tuple[str, CallbackReceiver]
) -> None:
    target, inbox = receiver
    redirect = Starlette(
        routes=[
            Route(
                "/cb",
                lambda r: Response(status_code=307, headers={"location": target}),
                methods=["POST"],
            )
        ]
    )
    async with serve(redirect) as url:
        task_id = await put(api, job(f"{url}/cb"))
        view = await wait_view(api, task_id, callback_failed, timeout=10)
    assert "307" in view["callback"]["last_error"]
    assert inbox.received == []


async def signed_callback(
    api: httpx.AsyncClient, settings: Settings, secret: str
) -> tuple[bytes, str, str]:
    """One real callback signed with `secret`: its raw body, timestamp and signature."""
    seen: list[tuple[bytes, dict[str, str]]] = []

    async def callback(request: Request) -> Response:
        seen.append((await request.body(), dict(request.headers)))
        return Response(b"ok")

    signed = settings.model_copy(update={"callback_secret": secret})
    async with (
        serve(Starlette(routes=[Route("/cb", callback, methods=["POST"])])) as url,
        running_worker(signed),
    ):
        await put(api, job(f"{url}/cb"))
        await eventually(lambda: seen, timeout=10, interval=0.05)
    body, headers = seen[0]
    return body, headers["x-queue-timestamp"], headers["x-queue-signature"]


async def test_callbacks_are_signed_and_a_receiver_can_verify_them(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    body, timestamp, signature = await signed_callback(api, settings, "s3cret")
    assert signature.startswith("sha256=")
    assert verify_callback("s3cret", body, timestamp, signature)
    assert not verify_callback("other", body, timestamp, signature)
    assert not verify_callback("s3cret", body + b" ", timestamp, signature)
    assert orjson.loads(body)["status"] == "succeeded"


def test_signatures_refuse_stale_or_malformed_timestamps() -> None:
    headers = signature_headers("k", b"{}", now=1_000_000)
    ts, sig = headers["x-queue-timestamp"], headers["x-queue-signature"]
    assert verify_callback("k", b"{}", ts, sig, now=1_000_100)
    assert not verify_callback("k", b"{}", ts, sig, now=1_000_000 + 301)
    assert not verify_callback("k", b"{}", "abc", sig)
    assert not verify_callback("k", b"{}", None, sig)


KEYS = """
[[key]]
key = "alice-key-123"
tenant = "alice"
queues = ["chat"]

[[key]]
key_env = "SECURITY_TEST_KEY"
tenant = "bob"
rate = 2
burst = 2
admin = true
"""


@pytest.fixture
async def keyed_api(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("SECURITY_TEST_KEY", "bob-key-4567")
    path = tmp_path / "keys.toml"
    path.write_text(KEYS)
    keyed = settings.model_copy(update={"api_keys_file": str(path)})
    async with serve(create_app(keyed)) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def test_a_key_may_only_use_its_queues(keyed_api: httpx.AsyncClient) -> None:
    alice = {"authorization": "Bearer alice-key-123"}
    ok = await keyed_api.post(
        "/v1/queue/put", json=job("http://127.0.0.1:9/cb", "chat"), headers=alice
    )
    assert ok.status_code == 200
    denied = await keyed_api.post(
        "/v1/queue/put", json=job("http://127.0.0.1:9/cb", "batch"), headers=alice
    )
    assert denied.status_code == 403
    assert "may not use queue 'batch'" in denied.json()["message"]


async def test_the_rate_limit_answers_429_with_retry_after(keyed_api: httpx.AsyncClient) -> None:
    bob = {"authorization": "Bearer bob-key-4567"}
    codes = []
    for _ in range(4):
        response = await keyed_api.get("/v1/queue/TASK-1-1-C-260101000000-0001-000001", headers=bob)
        codes.append(response.status_code)
    assert codes[:2] == [404, 404]
    assert 429 in codes[2:]
    limited = await keyed_api.get("/v1/queue/TASK-1-1-C-260101000000-0001-000001", headers=bob)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1

    async def let_through() -> httpx.Response | None:  # a refused call takes no token
        response = await keyed_api.get("/v1/queue/TASK-1-1-C-260101000000-0001-000001", headers=bob)
        return response if response.status_code != 429 else None

    again = await eventually(let_through, timeout=1.1, interval=0.05)  # the bucket refills
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[key]\n", "not valid TOML"),
        ('[[key]]\ntenant = "x"\n', "exactly one of key and key_env"),
        ('[[key]]\nkey = "short"\n', "at least 8"),
        ('[[key]]\nkey_env = "SECURITY_UNSET_VAR"\n', "SECURITY_UNSET_VAR is not set"),
        ('[[key]]\nkey = "long-enough-key"\nrate = -1\n', "greater than 0"),
    ],
)
def test_bad_key_files_are_refused_clearly(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    with pytest.raises(KeyFileError, match=message):
        Authenticator({}, str(path))


async def test_data_nested_too_deeply_is_refused(api: httpx.AsyncClient) -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = {"a": deep}
    response = await api.post("/v1/queue/put", json=job("http://127.0.0.1:9/cb", extra=deep))
    assert response.status_code == 400
    assert "data: nests deeper than 32 levels" in response.json()["message"]


def test_unsafe_destination_names_the_address() -> None:
    import asyncio

    policy = CallbackPolicy()
    with pytest.raises(UnsafeDestination, match=re.escape("10.0.0.1")):
        asyncio.run(policy.check("http://10.0.0.1/x"))


async def test_an_upstream_answer_over_the_size_limit_fails_clearly(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    small = settings.model_copy(update={"max_result_bytes": 2000, "max_stream_events": 20})
    async with running_worker(small):
        big = {**job("http://127.0.0.1:9/cb"), "level": 0, "response_mode": "blocking"}
        big.pop("callback_url")
        big["data"]["mock"] = {"tokens": 2000}
        response = await api.post("/v1/queue/put", json=big)
        assert response.status_code == 502
        assert "over the limit (2000 bytes)" in response.json()["error"]["message"]
        big["data"]["stream"] = True
        big["data"]["mock"] = {"tokens": 50}
        response = await api.post("/v1/queue/put", json=big)
        assert response.status_code == 502
        assert "went past 20 events" in response.json()["error"]["message"]


async def test_passthrough_sends_the_callers_key_upstream_and_keeps_it_only_encrypted(
    settings: Settings,
    redis: Any,
    receiver: tuple[str, CallbackReceiver],
    mock_upstream: tuple[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, inbox = receiver
    passthrough = Settings(
        **{**settings.model_dump(), "upstream_auth": "passthrough", "secret_key": "server-secret"}
    )
    caller_key = "sk-caller-own-key-42"
    async with (
        serve(create_app(passthrough)) as api_url,
        httpx.AsyncClient(base_url=api_url) as client,
    ):
        headers = {"x-upstream-api-key": caller_key}
        task_id = await put(client, job(url), headers=headers)
        keys = Keys(settings.key_prefix)
        stored = await redis.hget(keys.task("secure", task_id), "upstream_key")
        assert stored
        assert caller_key.encode() not in stored  # encrypted at rest
        async with running_worker(passthrough):
            (callback,) = await inbox.wait_for(1)
        view = (await client.get(f"/v1/queue/{task_id}")).json()
    (request,) = mock_upstream[1].state.mock_requests
    assert request.headers["authorization"] == f"Bearer {caller_key}"
    assert await redis.hget(keys.task("secure", task_id), "upstream_key") is None  # gone
    for seen in (orjson.dumps(callback).decode(), orjson.dumps(view).decode(), caplog.text):
        assert caller_key not in seen


def test_passthrough_without_a_secret_is_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match="needs QUEUE_SECRET_KEY"):
        Settings(upstream_auth="passthrough")


def _readme_verifier() -> Any:
    """The receiver-side `verify` exactly as the README prints it."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    source = next(block for block in blocks if "def verify(" in block)
    namespace: dict[str, Any] = {}
    exec(textwrap.dedent(source), namespace)
    return namespace["verify"]


async def test_a_receiver_written_from_the_readme_verifies_real_callbacks(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    verify = _readme_verifier()
    body, timestamp, signature = await signed_callback(api, settings, "readme-secret")
    assert verify("readme-secret", body, timestamp, signature)
    assert not verify("wrong-secret", body, timestamp, signature)
    assert not verify("readme-secret", body.replace(b"succeeded", b"failed"), timestamp, signature)
