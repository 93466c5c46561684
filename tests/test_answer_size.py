"""The size of an upstream's answer, checked while it is read (workers/upstream_call.py,
workers/adapters/http.py `read_body`): an answer past `max_result_bytes` (a JSON answer, an
error answer, an answer to a stream request that is not an event stream) ends the job
`failed` (502, `upstream_too_large`), and the worker stops reading it there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from queue_service.settings import Settings
from tests.helpers import eventually, put, put_body, view, wait_view
from tests.servers import serve

from .conftest import running_worker

LIMIT = 64 * 1024
PIECE = b"x" * (64 * 1024)
PIECES = 256
"""16 MB an answer: far more than the kernel's buffers between upstream and worker hold."""


@dataclass
class Answer:
    """One answer the upstream gave: how much of it went out before its client left."""

    sent: int = 0
    finished: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class PiecedAnswer:
    """An ASGI response of PIECES pieces with the status and type asked for (the length
    declared up front when asked), watching for its client going away."""

    def __init__(self, answer: Answer, status: int, content_type: str, declare: bool) -> None:
        self.answer = answer
        self.status = status
        self.headers = [(b"content-type", content_type.encode())]
        if declare:
            self.headers.append((b"content-length", b"%d" % (len(PIECE) * PIECES)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        producer = asyncio.ensure_future(self._produce(send))
        watcher = asyncio.ensure_future(self._until_disconnect(receive))
        try:
            await asyncio.wait((producer, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            producer.cancel()
            self.answer.ended.set()

    async def _produce(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        for index in range(PIECES):
            more = index < PIECES - 1
            await send({"type": "http.response.body", "body": PIECE, "more_body": more})
            self.answer.sent += len(PIECE)
            await asyncio.sleep(0)  # let the watcher see a disconnect between two pieces
        self.answer.finished = True

    @staticmethod
    async def _until_disconnect(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass


@dataclass
class BigUpstream:
    """A chat completions upstream answering with a big body, as the request's `answer`
    field says: {"status": ..., "type": ..., "declare": ...}."""

    answers: list[Answer] = field(default_factory=list)

    def app(self) -> Starlette:
        async def completions(request: Request) -> PiecedAnswer:
            asked = (await request.json())["answer"]
            answer = Answer()
            self.answers.append(answer)
            return PiecedAnswer(answer, asked["status"], asked["type"], asked["declare"])

        return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


@pytest.fixture
async def upstream(settings: Settings) -> AsyncIterator[tuple[Settings, BigUpstream]]:
    """The big upstream, and settings for a worker calling it with a small size limit."""
    big = BigUpstream()
    async with serve(big.app()) as url:
        limited = settings.model_copy(
            update={"upstream_url": url, "max_result_bytes": LIMIT, "upstream_max_retries": 0}
        )
        yield limited, big


ANSWERS = {
    "json": {"status": 200, "type": "application/json", "declare": False},
    "json-declared-length": {"status": 200, "type": "application/json", "declare": True},
    "error": {"status": 500, "type": "application/json", "declare": False},
    "text": {"status": 200, "type": "text/plain", "declare": False},
}


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 502, response.text[:300]
    error = response.json()["error"]
    assert error["type"] == "upstream_too_large"
    assert f"over the limit ({LIMIT} bytes)" in error["message"]


async def assert_stopped_early(big: BigUpstream) -> None:
    """The worker let go of the answer before the upstream could send it all."""
    (answer,) = big.answers
    await asyncio.wait_for(answer.ended.wait(), 5)
    assert not answer.finished
    assert answer.sent < len(PIECE) * PIECES // 2


@pytest.mark.parametrize("kind", list(ANSWERS))
async def test_an_oversize_answer_fails_the_job_and_is_not_read_to_its_end(
    api: httpx.AsyncClient, upstream: tuple[Settings, BigUpstream], kind: str
) -> None:
    limited, big = upstream
    body = put_body("sizes", level=0, mode="blocking", answer=ANSWERS[kind])
    async with running_worker(limited):
        response = await api.post("/v1/queue/put", json=body)
        assert_too_large(response)
        seen = await view(api, response.headers["x-task-id"])
        assert (seen["status"], seen["status_code"]) == ("failed", 502)
        await assert_stopped_early(big)


@pytest.mark.parametrize("kind", ["json", "error", "json-declared-length"])
async def test_an_oversize_answer_to_a_stream_request_that_is_no_event_stream_fails_the_job(
    api: httpx.AsyncClient, upstream: tuple[Settings, BigUpstream], kind: str
) -> None:
    """A streaming put whose upstream answers in one piece (an error, or JSON after all)."""
    limited, big = upstream
    body = put_body("sizes", level=0, mode="streaming", answer=ANSWERS[kind])
    async with running_worker(limited):
        response = await api.post("/v1/queue/put", json=body)
        assert response.headers["content-type"].startswith("application/json")
        assert_too_large(response)
        seen = await view(api, response.headers["x-task-id"])
        assert (seen["status"], seen["status_code"]) == ("failed", 502)
        await assert_stopped_early(big)


async def test_a_callback_job_with_an_oversize_answer_calls_back_its_failure(
    api: httpx.AsyncClient,
    upstream: tuple[Settings, BigUpstream],
    receiver: tuple[str, Any],
) -> None:
    limited, big = upstream
    url, inbox = receiver
    async with running_worker(limited):
        task_id = await put(api, put_body("sizes", url, answer=ANSWERS["error"]))
        (callback,) = await inbox.wait_for(1)
        seen = await wait_view(api, task_id, lambda v: v["callback"]["status"] == "delivered")
    assert (callback["status"], callback["status_code"]) == ("failed", 502)
    assert callback["body"]["error"]["type"] == "upstream_too_large"
    assert seen["result"]["error"]["type"] == "upstream_too_large"
    await assert_stopped_early(big)


async def test_an_answer_within_the_limit_is_kept_whole(
    api: httpx.AsyncClient, upstream: tuple[Settings, BigUpstream]
) -> None:
    limited, big = upstream
    roomy = limited.model_copy(update={"max_result_bytes": len(PIECE) * PIECES})
    body = put_body("sizes", level=0, mode="blocking", answer=ANSWERS["text"])
    async with running_worker(roomy):
        response = await api.post("/v1/queue/put", json=body)
    assert response.status_code == 200
    assert len(response.content) == len(PIECE) * PIECES
    (answer,) = big.answers
    await eventually(lambda: answer.finished, timeout=5)
