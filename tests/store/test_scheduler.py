"""The scheduler: weighted fair shares between tenants and between a tenant's queues, no
credit for idling, paused and unserved queues skipped, short reads settled without losing a
lane a put marked meanwhile."""

from __future__ import annotations

from collections import Counter

from redis.asyncio import Redis

from queue_service.models import ResponseMode
from queue_service.store import Keys, Store, StreamReader
from queue_service.store.keys import tenant_id

from . import put_request, submit


async def backlog(store: Store, tenant: str, count: int, queue: str = "q", level: int = 1) -> None:
    job = put_request(queue, ResponseMode.CALLBACK, level=level)
    for _ in range(count):
        await submit(store, job, tenant=tenant)


async def take(store: Store, reader: StreamReader, level: int = 1, count: int = 1) -> str | None:
    """One worker's turn: pick a lane, read from it, settle a short read; the tenant served
    (by name: a, b, c), or None when nothing was ready."""
    pick = await store.scheduler.pick(level, count, None)
    if pick is None:
        return None
    entries = await reader.read(pick.lane, count)
    if len(entries) < count:
        await store.scheduler.settle(pick, len(entries))
    if not entries:
        return await take(store, reader, level, count)
    names = {tenant_id(name): name for name in "abc"}
    return names[pick.lane.tenant] + ("" if pick.lane.queue == "q" else f"/{pick.lane.queue}")


async def turns(store: Store, reader: StreamReader, n: int, level: int = 1) -> list[str | None]:
    return [await take(store, reader, level) for _ in range(n)]


async def test_tenants_take_turns_whoever_put_first(store: Store, reader: StreamReader) -> None:
    await backlog(store, "a", 30)
    await backlog(store, "b", 3)
    served = await turns(store, reader, 10)
    assert served[:6].count("b") == 3  # b's three jobs within its first three turns
    assert served[6:] == ["a"] * 4
    assert Counter(served) == {"a": 7, "b": 3}


async def test_weights_divide_the_turns(store: Store, reader: StreamReader) -> None:
    await store.scheduler.set_weights("t", {"a": 3})
    await backlog(store, "a", 60)
    await backlog(store, "b", 60)
    served = Counter(await turns(store, reader, 40))
    assert served == {"a": 30, "b": 10}


async def test_a_tenants_queues_share_its_turns_by_weight(
    store: Store, reader: StreamReader
) -> None:
    await store.scheduler.set_weights("q", {"bulk": 1, "rush": 2})
    await backlog(store, "a", 20, queue="bulk")
    await backlog(store, "a", 20, queue="rush")
    await backlog(store, "b", 20)
    served = Counter(await turns(store, reader, 24))
    assert served["b"] == 12  # b's share is not cut by a having two queues
    assert (served["a/rush"], served["a/bulk"]) == (8, 4)


async def test_idling_earns_no_credit(store: Store, reader: StreamReader) -> None:
    await backlog(store, "a", 40)
    assert set(await turns(store, reader, 20)) == {"a"}
    await backlog(store, "b", 20)  # b arrives after a had 20 turns alone: no 20 in a row
    served = Counter(await turns(store, reader, 10))
    assert served["b"] in (5, 6)  # an even share (b starts at the virtual time: one ahead)
    assert served["a"] + served["b"] == 10


async def test_online_and_offline_are_apart(store: Store, reader: StreamReader) -> None:
    await backlog(store, "a", 2, level=1)
    await backlog(store, "b", 1, level=0)
    assert await turns(store, reader, 2, level=0) == ["b", None]
    assert await turns(store, reader, 3, level=1) == ["a", "a", None]


async def test_a_paused_queue_is_passed_over_until_resumed(
    store: Store, reader: StreamReader
) -> None:
    await backlog(store, "a", 2, queue="held")
    await backlog(store, "b", 1)
    await store.queues.set_paused("held", True)
    assert await turns(store, reader, 2) == ["b", None]
    await store.queues.set_paused("held", False)
    assert await turns(store, reader, 3) == ["a/held", "a/held", None]


async def test_a_worker_serving_some_queues_skips_the_others(
    store: Store, reader: StreamReader
) -> None:
    await backlog(store, "a", 1, queue="mine")
    await backlog(store, "b", 1, queue="theirs")
    pick = await store.scheduler.pick(1, 1, frozenset({"mine"}))
    assert pick is not None
    assert pick.lane.queue == "mine"
    assert await store.scheduler.pick(1, 1, frozenset({"nothing"})) is None


async def test_a_lane_marked_while_its_short_read_settles_stays_ready(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    await backlog(store, "a", 1)
    pick = await store.scheduler.pick(1, 5, None)
    assert pick is not None
    assert len(await reader.read(pick.lane, 5)) == 1
    await backlog(store, "a", 1)  # a put lands between the read and the settle
    await store.scheduler.settle(pick, 1)
    assert await take(store, reader) == "a"
    ready = Keys(prefix).ready_queues(1, tenant_id("a"))
    assert await take(store, reader) is None  # the empty read dropped the lane at last
    assert await redis.zcard(ready) == 0


async def test_an_empty_level_picks_nothing(store: Store) -> None:
    assert await store.scheduler.pick(0, 4, None) is None


async def test_weights_hold_beside_a_tenant_served_by_workers_of_its_own(
    store: Store, reader: StreamReader
) -> None:
    await store.scheduler.set_weights("t", {"a": 3})
    await backlog(store, "a", 60, queue="shared")
    await backlog(store, "b", 60, queue="shared")
    await backlog(store, "c", 60, queue="own")  # a --queues worker of its own serves it
    names = {tenant_id(name): name for name in "abc"}

    async def turn(serves: str) -> str:
        pick = await store.scheduler.pick(1, 1, frozenset({serves}))
        assert pick is not None
        assert len(await reader.read(pick.lane, 1)) == 1
        return names[pick.lane.tenant]

    shared = []
    for _ in range(40):
        shared.append(await turn("shared"))
        await turn("own")
    assert Counter(shared) == {"a": 30, "b": 10}


async def test_a_repair_marks_lanes_whose_mark_was_lost(
    store: Store, reader: StreamReader, redis: Redis, prefix: str
) -> None:
    await backlog(store, "a", 2)
    await backlog(store, "b", 1, queue="other")
    keys = Keys(prefix)
    async for key in redis.scan_iter(match=f"{prefix}:{{sched}}:*"):  # lost with a crash
        await redis.delete(key)
    assert await store.scheduler.pick(1, 1, None) is None
    assert await store.queues.repair_ready(["q", "other", "empty"]) == 2
    assert Counter(await turns(store, reader, 4)) == {"a": 2, "b/other": 1, None: 1}
    assert await store.queues.repair_ready(["q", "other"]) == 0  # nothing waits now
    assert await redis.exists(keys.ready_tenants(1)) == 0
