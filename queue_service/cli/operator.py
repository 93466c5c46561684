"""`queue-service stats`, `queue-service workers` and `queue-service worker --check`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from queue_service.settings import Settings
from queue_service.store import Store


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


async def _with_store(settings: Settings, use: Callable[[Store], Awaitable[Any]]) -> Any:
    store = Store.from_settings(settings)
    try:
        return await use(store)
    finally:
        await store.aclose()


async def _stats(store: Store) -> str:
    rows = [["queue", "level", "waiting", "in flight", "oldest waiting s", "succeeded", "failed",
             "timeout", "cancelled", "paused", "workers"]]  # fmt: skip
    for queue in sorted(await store.queues.all()):
        figures = await store.statistics.queue(queue)
        for level, numbers in figures["levels"].items():
            totals = numbers["totals"]
            oldest = numbers["oldest_waiting_s"]
            rows.append([
                queue, level, str(numbers["waiting"]), str(numbers["in_flight"]),
                "-" if oldest is None else f"{oldest:.1f}",
                *(str(totals.get(status, 0)) for status in ("succeeded", "failed", "timeout",
                                                            "cancelled")),
                "yes" if figures["paused"] else "no", str(len(figures["workers"])),
            ])  # fmt: skip
    return _table(rows)


async def _workers(store: Store) -> str:
    rows = [["worker", "host", "pid", "queues", "slots", "in flight", "jobs done"]]
    for worker in sorted(await store.heartbeats.live(), key=lambda w: str(w["name"])):
        queues = ",".join(worker["queues"]) if worker["queues"] is not None else "*"
        numbers = (worker["pid"], queues, worker["slots"], worker["in_flight"], worker["jobs_done"])
        rows.append([worker["name"], worker["host"], *map(str, numbers)])
    return _table(rows)


def print_stats(settings: Settings) -> None:
    print(asyncio.run(_with_store(settings, _stats)))


def print_workers(settings: Settings) -> None:
    print(asyncio.run(_with_store(settings, _workers)))


def check_workers(settings: Settings) -> int:
    """Exit status for health checks: 0 while a worker of this deployment is alive."""

    async def count(store: Store) -> int:
        return len(await store.heartbeats.live())

    try:
        alive = asyncio.run(_with_store(settings, count))
    except Exception as exc:
        print(f"no: {exc}")
        return 1
    print(f"{alive} worker(s) alive")
    return 0 if alive else 1
