"""A worker never runs more jobs than its slots, nor more offline jobs than its offline slots,
however many queues hold a backlog when it starts (one read over many streams hands over up
to COUNT entries per stream: those go back to their queue at once), and it keeps none it
cannot start from workers that could."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import orjson
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from queue_service.settings import Settings
from queue_service.store.keys import Keys
from tests.conftest import running_worker
from tests.helpers import eventually, put, put_body
from tests.servers import CallbackReceiver, serve

CONCURRENCY = 4
QUEUES = [f"slots-{n}" for n in range(6)]


@dataclass
class HoldingUpstream:
    """An OpenAI-style upstream that holds each request open until the test releases it, and
    counts the requests open at once (all of them, and the offline ones): the most seen."""

    open: list[tuple[str, asyncio.Event]] = field(default_factory=list)
    most: int = 0
    most_offline: int = 0
    answered: int = 0

    def app(self) -> Starlette:
        async def chat(request: Request) -> Response:
            text: str = orjson.loads(await request.body())["messages"][0]["content"]
            held = (text, asyncio.Event())
            self.open.append(held)
            self.most = max(self.most, len(self.open))
            offline = sum(1 for open_text, _ in self.open if open_text.startswith("offline"))
            self.most_offline = max(self.most_offline, offline)
            try:
                await held[1].wait()
            finally:
                self.open.remove(held)
            self.answered += 1
            reply = {"object": "chat.completion", "choices": [{"message": {"content": "ok"}}]}
            return Response(orjson.dumps(reply), media_type="application/json")

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])

    def waiting(self) -> list[tuple[str, asyncio.Event]]:
        """The requests open and not released yet, oldest first."""
        return [held for held in self.open if not held[1].is_set()]


async def release_one_by_one(
    upstream: HoldingUpstream, left: dict[str, int], busy: Callable[[int, int], int]
) -> None:
    """Release the oldest held request each time the worker has as many open as it should:
    `busy(online left, offline left)` (`left`: jobs per level not released yet)."""
    while left["online"] + left["offline"]:
        expected = busy(left["online"], left["offline"])

        def saturated(expected: int = expected) -> bool:
            return len(upstream.waiting()) >= expected

        what = f"{expected} requests open at the upstream (left: {left})"
        await eventually(saturated, timeout=10, what=what)
        text, release = upstream.waiting()[0]
        release.set()
        left[text.split()[0]] -= 1


async def put_backlog(api: httpx.AsyncClient, url: str, level: int, per_queue: int) -> int:
    kind = "online" if level == 0 else "offline"
    for queue in QUEUES:
        for n in range(per_queue):
            await put(api, put_body(queue, url, level=level, text=f"{kind} {queue} {n}"))
    return len(QUEUES) * per_queue


@pytest.mark.parametrize(
    ("reserved", "offline_slots"),
    [(0, 4), (2, 2), (9, 1)],  # reserved slots are capped at concurrency - 1
    ids=["reserved-0", "reserved-2", "reserved-capped"],
)
async def test_offline_backlog_on_six_queues_never_runs_beyond_the_offline_slots(
    api: httpx.AsyncClient,
    settings: Settings,
    receiver: tuple[str, CallbackReceiver],
    reserved: int,
    offline_slots: int,
) -> None:
    url, inbox = receiver
    upstream = HoldingUpstream()
    total = await put_backlog(api, url, level=1, per_queue=CONCURRENCY)  # before the worker
    async with serve(upstream.app()) as upstream_url:
        tuned = settings.model_copy(
            update={
                "upstream_url": upstream_url,
                "concurrency": CONCURRENCY,
                "online_reserved_slots": reserved,
            }
        )
        async with running_worker(tuned):
            left = {"online": 0, "offline": total}
            await release_one_by_one(upstream, left, lambda _, offline: min(offline_slots, offline))
            callbacks = await inbox.wait_for(total, timeout=15)

    assert upstream.most <= CONCURRENCY, f"{upstream.most} requests open at once"
    assert upstream.most_offline <= offline_slots, f"{upstream.most_offline} offline at once"
    assert upstream.most_offline == offline_slots  # the slots were used, too
    assert upstream.answered == total
    assert len(callbacks) == total
    assert {callback["status"] for callback in callbacks} == {"succeeded"}


async def test_online_and_offline_backlog_never_runs_beyond_the_slots(
    api: httpx.AsyncClient, settings: Settings, receiver: tuple[str, CallbackReceiver]
) -> None:
    url, inbox = receiver
    upstream = HoldingUpstream()
    reserved = 2
    offline_slots = CONCURRENCY - reserved
    online = await put_backlog(api, url, level=0, per_queue=CONCURRENCY)
    offline = await put_backlog(api, url, level=1, per_queue=CONCURRENCY)
    async with serve(upstream.app()) as upstream_url:
        tuned = settings.model_copy(
            update={
                "upstream_url": upstream_url,
                "concurrency": CONCURRENCY,
                "online_reserved_slots": reserved,
            }
        )
        async with running_worker(tuned):
            left = {"online": online, "offline": offline}
            await release_one_by_one(
                upstream,
                left,
                lambda on, off: min(CONCURRENCY, on + min(offline_slots, off)),
            )
            callbacks = await inbox.wait_for(online + offline, timeout=15)

    assert upstream.most <= CONCURRENCY, f"{upstream.most} requests open at once"
    assert upstream.most_offline <= offline_slots, f"{upstream.most_offline} offline at once"
    assert upstream.answered == online + offline
    assert len(callbacks) == online + offline
    assert {callback["status"] for callback in callbacks} == {"succeeded"}


async def test_a_worker_keeps_no_entry_it_cannot_start(
    api: httpx.AsyncClient,
    settings: Settings,
    receiver: tuple[str, CallbackReceiver],
    redis: Redis,
    prefix: str,
) -> None:
    url, _ = receiver
    upstream = HoldingUpstream()
    total = await put_backlog(api, url, level=1, per_queue=CONCURRENCY)
    async with serve(upstream.app()) as upstream_url:
        tuned = settings.model_copy(
            update={
                "upstream_url": upstream_url,
                "concurrency": CONCURRENCY,
                "online_reserved_slots": 0,
            }
        )
        async with running_worker(tuned), running_worker(tuned):
            await eventually(lambda: len(upstream.waiting()) >= 2 * CONCURRENCY, timeout=10)

            async def pending_per_worker() -> dict[str, int]:
                held: dict[str, int] = {}
                for queue in QUEUES:
                    summary = await redis.xpending(Keys(prefix).stream(queue, 1), "workers")
                    for consumer in summary["consumers"] or []:
                        name = consumer["name"].decode()
                        held[name] = held.get(name, 0) + int(consumer["pending"])
                return held

            async def only_running_jobs_pending() -> dict[str, int] | None:
                held = await pending_per_worker()  # entries handed back leave the lists
                return held if sorted(held.values()) == [CONCURRENCY] * 2 else None

            await eventually(only_running_jobs_pending, timeout=10)

            def all_answered() -> bool:  # let the whole backlog through, as it comes
                for _, release in upstream.waiting():
                    release.set()
                return upstream.answered == total

            await eventually(all_answered, timeout=15)
