"""arq cron (and once at a worker's start): mark ready every lane that holds entries no
worker was handed but that the scheduler does not know of, so no accepted job waits longer
than a minute however its put or Redis's data was cut short (see `Scheduler.repair`); and
publish the routing file's queue weights again, should Redis have lost them."""

from __future__ import annotations

import logging
from typing import Any

from queue_service.store import Store

log = logging.getLogger("workers.ready_repair")


async def repair_ready_lanes(store: Store) -> int:
    marked = await store.queues.repair_ready(sorted(await store.queues.all()))
    if marked:
        log.warning("%d lanes held waiting jobs the scheduler had lost; marked ready", marked)
    return marked


async def sweep_ready_lanes(ctx: dict[str, Any]) -> int:
    runtime = ctx["runtime"]
    store: Store = runtime.store
    await store.scheduler.set_weights("q", runtime.routing.queue_weights)
    return await repair_ready_lanes(store)
