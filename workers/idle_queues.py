"""arq cron: remove queues idle for `QUEUE_QUEUE_IDLE_TTL` seconds (nothing waiting, running
or owed on them, and their last task record expired that long ago), so the registry, the
streams workers read and the metrics do not grow with every queue name ever used."""

from __future__ import annotations

import logging
from typing import Any

from queue_service.store import Store

log = logging.getLogger("workers.idle_queues")


async def sweep_idle_queues(ctx: dict[str, Any]) -> int:
    """Remove every idle queue; returns how many were removed."""
    store: Store = ctx["runtime"].store
    idle_s: int = ctx["runtime"].settings.queue_idle_ttl
    removed = 0
    for name in await store.queues.idle_candidates(sorted(await store.queues.all()), idle_s):
        if await store.queues.remove_if_idle(name, idle_s):
            log.info("queue %s removed: idle for %ds after its last task expired", name, idle_s)
            removed += 1
    return removed
