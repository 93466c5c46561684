"""What many test files need: put bodies, a put through the API, task views, and one poll."""

from __future__ import annotations

import ast
import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import httpx

T = TypeVar("T")

CHAT = "/v1/chat/completions"


def put_body(
    queue: str,
    callback_url: str | None = None,
    *,
    text: str = "x",
    level: int = 1,
    mode: str | None = None,
    model: str = "m",
    mock: dict[str, Any] | None = None,
    timeout: int | None = None,
    **data: Any,
) -> dict[str, Any]:
    """The body of a chat completion put on `queue`: one user message `text` to `model`, more
    fields of the request in `data`, and the mock upstream's controls as `data["mock"]` when
    `mock` is given. `callback_url`, `mode` (response_mode) and `timeout` only when given."""
    body: dict[str, Any] = {
        "queue": queue,
        "endpoint": CHAT,
        "level": level,
        "data": {"model": model, "messages": [{"role": "user", "content": text}], **data},
    }
    if mock is not None:
        body["data"]["mock"] = dict(mock)
    if mode is not None:
        body["response_mode"] = mode
    if callback_url is not None:
        body["callback_url"] = callback_url
    if timeout is not None:
        body["timeout"] = timeout
    return body


async def put(api: httpx.AsyncClient, body: dict[str, Any], **request: Any) -> str:
    """POST /v1/queue/put (more keywords go to httpx); asserts 200 and returns the task id."""
    response = await api.post("/v1/queue/put", json=body, **request)
    assert response.status_code == 200, response.text
    task_id: str = response.json()["data"]
    return task_id


async def view(api: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """GET /v1/queue/{task_id}: the task's view."""
    data: dict[str, Any] = (await api.get(f"/v1/queue/{task_id}")).json()["data"]
    return data


async def wait_view(
    api: httpx.AsyncClient,
    task_id: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 15.0,
) -> dict[str, Any]:
    """Poll GET /v1/queue/{task_id} until `done(view)`; returns that view."""

    async def viewed() -> dict[str, Any] | None:
        seen = await view(api, task_id)
        return seen if done(seen) else None

    what = f"task {task_id} to satisfy {_describe(done)}"
    return await eventually(viewed, timeout=timeout, what=what)


def callback_settled(view: dict[str, Any]) -> bool:
    return view["callback"]["status"] in ("delivered", "failed")


async def wait_until_up(url: str, timeout: float = 20.0) -> None:
    """Poll GET `url` until a server answers it (any status)."""
    async with httpx.AsyncClient() as client:

        async def answers() -> bool:
            try:
                await client.get(url)
            except httpx.TransportError:
                return False
            return True

        await eventually(answers, timeout=timeout, interval=0.1, what=f"{url} to answer")


@overload
async def eventually(
    condition: Callable[[], Awaitable[T | None]],
    timeout: float = ...,
    interval: float = ...,
    *,
    what: str | None = ...,
) -> T: ...
@overload
async def eventually(
    condition: Callable[[], T | None],
    timeout: float = ...,
    interval: float = ...,
    *,
    what: str | None = ...,
) -> T: ...
async def eventually(
    condition: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.02,
    *,
    what: str | None = None,
) -> Any:
    """Call `condition` (sync or async) every `interval` seconds until it returns something
    truthy, and return that. After `timeout` seconds (a call under way included) fail with an
    AssertionError naming what was awaited (`what`, else the condition) and its last value.
    An exception raised by the condition ends the wait at once."""
    last: object = None
    timer = asyncio.timeout(timeout)
    try:
        async with timer:
            while True:
                value = condition()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return value
                last = value
                if timer.expired():  # the condition swallowed our cancellation
                    break
                await asyncio.sleep(interval)
    except TimeoutError:
        if not timer.expired():
            raise  # the condition's own timeout, not ours
    awaited = what or _describe(condition)
    raise AssertionError(f"gave up after {timeout} s waiting for {awaited} (last: {last!r:.300})")


def _describe(condition: Callable[..., object]) -> str:
    """A lambda's expression as written, else the callable's qualified name."""
    name = getattr(condition, "__qualname__", None) or repr(condition)
    if getattr(condition, "__name__", None) != "<lambda>":
        return name
    try:
        text = " ".join(inspect.getsource(condition).split())
    except (OSError, TypeError):
        return name
    start = text.find("lambda")
    if start < 0:
        return text
    for end in range(len(text), start, -1):  # the longest piece that is the lambda alone
        try:
            node = ast.parse(text[start:end], mode="eval").body
        except SyntaxError:
            continue
        if isinstance(node, ast.Lambda):
            return ast.unparse(node.body)
    return text
