"""How arq runs our worker: hooks and the arq `Worker` arguments for given settings.

The hot path (level streams) is our own XREADGROUP consumer, started in `on_startup`;
arq supplies the process, signals, graceful shutdown and deferred jobs (callback retries).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import Worker, func

from queue_service.settings import Settings
from queue_service.store import STORE_ERRORS, Store
from queue_service.store.keys import Keys
from queue_service.upstreams import RoutingError

from .adapters import Upstream
from .batch_sweep import sweep_batches
from .callbacks import DELIVER_CALLBACK, deliver_callback, sweep_overdue_callbacks
from .idle_queues import sweep_idle_queues
from .ready_repair import sweep_ready_lanes
from .routing import RoutingTable
from .runtime import WorkerRuntime
from .schedule import ScheduleError, schedule_cron_jobs

log = logging.getLogger("workers.entry")

REDIS_RETRY_S = 1.0
BATCH_SWEEP_S = 10
"""Seconds between looks at the open batches (ending them, sending their webhooks)."""


class ResilientWorker(Worker):
    """arq's Worker, surviving a Redis outage: it waits for Redis to start (one log line per
    try), and its poll loop logs and goes on. (Plain arq gives up after five tries to
    connect, and ends the process when a poll fails; our stream consumer already retries.)
    """

    async def main(self) -> None:
        await wait_for_redis(self.ctx["settings"])
        await super().main()

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except STORE_ERRORS as exc:
            log.warning("arq poll failed (%s); retrying", exc)
            await asyncio.sleep(1.0)


async def wait_for_redis(settings: Settings) -> None:
    """Return once Redis answers; until then try every second, saying so each time."""
    tries = 0
    while True:
        tries += 1
        store = Store.from_settings(settings)
        try:
            await store.ping()
            return
        except STORE_ERRORS as exc:
            log.warning(
                "redis at %s is not reachable (try %d: %s); trying again in %.0fs",
                settings.redis_location,
                tries,
                exc,
                REDIS_RETRY_S,
            )
        finally:
            await store.aclose()
        await asyncio.sleep(REDIS_RETRY_S)


async def on_startup(ctx: dict[str, Any]) -> None:
    runtime = WorkerRuntime(ctx["settings"], ctx["queues"], ctx["redis"])
    await runtime.start()
    ctx["runtime"] = runtime  # once running: a stop can only meet a started runtime


async def on_shutdown(ctx: dict[str, Any]) -> None:
    runtime: WorkerRuntime | None = ctx.get("runtime")
    if runtime is not None:
        await runtime.stop(runtime.settings.shutdown_grace)


def check_configuration(settings: Settings) -> None:
    """Fail before starting when the routing file is wrong (SystemExit with the reason)."""
    try:
        RoutingTable.load(settings.upstreams_file, Upstream(settings.upstream_url))
        schedule_cron_jobs(settings.schedule_file, settings.key_prefix, settings.max_timeout)
    except (RoutingError, ScheduleError) as exc:
        raise SystemExit(f"queue-service worker: {exc}") from None


def worker_settings(settings: Settings, queues: frozenset[str] | None = None) -> dict[str, Any]:
    """The keyword arguments of arq's `Worker` for these settings."""
    keys = Keys(settings.key_prefix)
    return {
        "functions": [func(deliver_callback, name=DELIVER_CALLBACK, max_tries=1)],
        "cron_jobs": [
            # arq's cron job ids are global: name it by prefix, or deployments sharing a Redis
            # would skip each other's sweeps.
            cron(
                sweep_overdue_callbacks,
                name=f"cron:{keys.prefix}:sweep_overdue_callbacks",
                second={0},
                unique=True,
            ),
            cron(
                sweep_batches,
                name=f"cron:{keys.prefix}:sweep_batches",
                second=set(range(0, 60, BATCH_SWEEP_S)),
                unique=True,
            ),
            cron(
                sweep_ready_lanes,
                name=f"cron:{keys.prefix}:sweep_ready_lanes",
                second={45},
                unique=True,
            ),
            cron(
                sweep_idle_queues,
                name=f"cron:{keys.prefix}:sweep_idle_queues",
                second={30},
                unique=True,
            ),
            *schedule_cron_jobs(settings.schedule_file, keys.prefix, settings.max_timeout),
        ],
        "queue_name": keys.arq_queue,
        "health_check_key": keys.arq_health_check,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "ctx": {"settings": settings, "queues": queues},
        "max_jobs": 100,
        "keep_result": 0,
        "handle_signals": True,
    }


def use_uvloop() -> None:
    """Run the worker on uvloop when it is installed (it comes with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
