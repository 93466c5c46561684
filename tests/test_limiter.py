"""Concurrency limits shared by every worker: the cap holds, priority, dead workers' slots."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import httpx
import orjson
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from queue_service.store import Store
from queue_service.store.keys import Keys
from tests.conftest import process_env
from tests.helpers import eventually, put, put_body
from tests.servers import CallbackReceiver, serve
from workers.limiter import Limiter
from workers.routing import Limit


class CountingUpstream:
    """An OpenAI-style upstream that counts requests in flight; `hold` delays each answer."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.in_flight = 0
        self.most = 0
        self.served = 0
        self.release = asyncio.Event()

    def app(self) -> Starlette:
        async def chat(request: Request) -> Response:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            try:
                body = orjson.loads(await request.body())
                if body.get("hang"):
                    await self.release.wait()
                await asyncio.sleep(self.hold)
            finally:
                self.in_flight -= 1
            self.served += 1
            reply = {"object": "chat.completion", "choices": [{"message": {"content": "ok"}}]}
            return Response(orjson.dumps(reply), media_type="application/json")

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture
async def limiter(redis: Redis, redis_url: str, prefix: str) -> Limiter:
    store = Store(redis, Keys(prefix), redis_url=redis_url, retention_s=60)
    return Limiter(store.leases, lease_ttl=1.0)


async def test_a_limit_never_admits_more_than_its_size(limiter: Limiter) -> None:
    limit = Limit("cap", 2)
    inside = most = 0

    async def job(n: int) -> None:
        nonlocal inside, most
        async with limiter.hold((limit,), f"lease-{n}", level=1, created_ms=n):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.02)  # work while holding the slot, so holders would overlap
            inside -= 1

    await asyncio.gather(*(job(n) for n in range(12)))
    assert most == 2


async def test_online_waiters_get_the_next_slot_before_older_offline_ones(
    limiter: Limiter, redis: Redis, prefix: str
) -> None:
    limit = Limit("prio", 1)
    order: list[str] = []
    holding = asyncio.Event()
    let_go = asyncio.Event()

    async def holder() -> None:
        async with limiter.hold((limit,), "first", level=1, created_ms=0):
            holding.set()
            await let_go.wait()

    async def waiter(name: str, level: int, created_ms: int) -> None:
        async with limiter.hold((limit,), name, level=level, created_ms=created_ms):
            order.append(name)

    async def queued(name: str) -> bool:
        """`name` waits for the slot in Redis."""
        return await redis.zscore(Keys(prefix).limit_waiters(limit.name), name) is not None

    first = asyncio.create_task(holder())
    await holding.wait()
    offline = asyncio.create_task(waiter("offline", 1, 1))
    await eventually(lambda: queued("offline"))
    online = asyncio.create_task(waiter("online", 0, 2))
    await eventually(lambda: queued("online"))
    let_go.set()
    await asyncio.gather(first, offline, online)
    assert order == ["online", "offline"]


async def test_a_lease_nobody_renews_expires(limiter: Limiter, redis: Redis, prefix: str) -> None:
    limit = Limit("dead", 1)
    keys = Keys(prefix)
    # A worker that took the slot and died: its lease is there, nobody renews it.
    await redis.zadd(keys.limit_leases(limit.name), {"dead-worker:task": time.time() * 1000 + 1000})
    started = time.monotonic()
    async with limiter.hold((limit,), "alive", level=0, created_ms=0):
        waited = time.monotonic() - started
    assert 0.8 <= waited < 2.5


def routes_file(tmp_path: Path, upstream_url: str, size: int) -> str:
    path = tmp_path / "upstreams.toml"
    path.write_text(
        f'[[upstream]]\nname = "small"\nendpoint = "/v1/chat/completions"\n'
        f'base_url = "{upstream_url}"\nmax_concurrency = {size}\n'
    )
    return str(path)


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def start_workers(count: int, env: dict[str, str], into: list[subprocess.Popen[bytes]]) -> None:
    command = [str(Path(sys.executable).parent / "queue-service"), "worker"]
    for _ in range(count):
        into.append(subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL))


async def wait_for_workers(redis: Redis, prefix: str, count: int) -> None:
    keys = Keys(prefix)

    async def ready() -> bool:
        """A worker is up, and all `count` processes subscribed to their announcements."""
        if not await redis.exists(keys.arq_health_check):
            return False
        ((_, subscribed),) = await redis.pubsub_numsub(keys.limit_released_channel)
        return bool(subscribed >= count)

    await eventually(ready, timeout=30, interval=0.05)


job = partial(put_body, "limited")


@pytest.fixture
async def counting() -> AsyncIterator[tuple[str, CountingUpstream]]:
    upstream = CountingUpstream(hold=0.05)
    async with serve(upstream.app()) as url:
        yield url, upstream
        upstream.release.set()


async def test_three_workers_never_exceed_the_upstream_limit(
    api: httpx.AsyncClient,
    redis: Redis,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    receiver: tuple[str, CallbackReceiver],
    counting: tuple[str, CountingUpstream],
    workers: list[subprocess.Popen[bytes]],
) -> None:
    url, inbox = receiver
    upstream_url, upstream = counting
    routes = routes_file(tmp_path, upstream_url, 4)
    env = process_env(redis_url, prefix, upstreams_file=routes, concurrency="16")
    start_workers(3, env, workers)
    await wait_for_workers(redis, prefix, 3)
    for n in range(100):
        await put(api, job(url, text=f"j{n}"))
    await inbox.wait_for(100, timeout=60)
    assert upstream.served == 100
    assert upstream.most == 4
    assert {c["status"] for c in inbox.received} == {"succeeded"}


async def test_a_killed_worker_gives_its_slots_back_within_the_lease_ttl(
    api: httpx.AsyncClient,
    redis: Redis,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    receiver: tuple[str, CallbackReceiver],
    counting: tuple[str, CountingUpstream],
    workers: list[subprocess.Popen[bytes]],
) -> None:
    url, inbox = receiver
    upstream_url, upstream = counting
    routes = routes_file(tmp_path, upstream_url, 2)
    env = process_env(redis_url, prefix, upstreams_file=routes, limit_lease_ttl="2")
    full = {**env, "QUEUE_CONCURRENCY": "2", "QUEUE_ONLINE_RESERVED_SLOTS": "0"}
    start_workers(1, full, workers)  # its two job slots will be full: later jobs go elsewhere
    await wait_for_workers(redis, prefix, 1)
    for n in range(2):  # both limiter slots taken by jobs that hang
        await put(api, job(url, text=f"hang{n}", hang=True))
    await eventually(lambda: upstream.in_flight >= 2, timeout=10)
    keys, limit = Keys(prefix), "upstream:small"  # the routes file's upstream
    leases, waiters = keys.limit_leases(limit), keys.limit_waiters(limit)
    taken = dict(await redis.zrange(leases, 0, -1, withscores=True))
    assert len(taken) == 2
    start_workers(1, env, workers)  # a second worker, ready before the first dies
    await put(api, job(url, text="after"))

    async def after_waits_past_the_first_expiry() -> bool:
        """The second worker has "after" waiting for a slot, and past the expiry they were
        taken with, the hanging jobs' leases are still held (the first worker renews them)."""
        now_ms = time.time() * 1000
        held = dict(await redis.zrange(leases, 0, -1, withscores=True))
        renewed = held.keys() == taken.keys() and min(held.values()) > now_ms
        lapsed = now_ms > max(taken.values())
        return renewed and lapsed and bool(await redis.zcard(waiters))

    await eventually(after_waits_past_the_first_expiry, timeout=30, interval=0.05)
    assert upstream.served == 0  # the limit is full: "after" waits for a slot
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait(10)
    killed = time.monotonic()
    (callback,) = await inbox.wait_for(1, timeout=30)
    recovered = time.monotonic() - killed
    assert callback["status"] == "succeeded"
    assert recovered < 2 + 1.5  # bounded by the lease TTL (2 s here)
