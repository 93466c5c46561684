"""arq cron: end the batches that should end even when nobody reads them, and announce each
ended batch at its webhook: `{"object": "event", "type": "batch.completed", "data": {"id"}}`
(or `batch.failed`, `batch.expired`, `batch.cancelled`), signed as callbacks are, retried
with backoff up to QUEUE_CALLBACK_MAX_ATTEMPTS, then given up (and logged)."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from queue_service.store import Store
from queue_service.store.batches import Batch
from queue_service.timing import backoff, now_ms

log = logging.getLogger("workers.batch_sweep")


async def sweep_batches(ctx: dict[str, Any]) -> int:
    """Settle open batches, then try the webhooks due; how many webhooks were delivered."""
    runtime = ctx["runtime"]
    store: Store = runtime.store
    for batch_id in await store.batches.open_ids():
        batch = await store.batches.load_any(batch_id)
        if batch is not None:
            await store.batches.settle(batch)
    delivered = 0
    for batch_id in await store.batches.webhooks_due():
        batch = await store.batches.load_any(batch_id)
        if batch is None or not batch.webhook_url:
            await store.batches.webhook_tried(batch_id, None)
            continue
        attempt = await store.batches.webhook_attempt(batch_id)
        error = await _post(runtime, batch)
        settings = runtime.settings
        if error is None:
            delivered += 1
            await store.batches.webhook_tried(batch_id, None)
        elif attempt >= settings.callback_max_attempts:
            log.error("batch %s webhook given up after %d attempts: %s", batch_id, attempt, error)
            await store.batches.webhook_tried(batch_id, None)
        else:
            delay = backoff(attempt, settings.callback_backoff, settings.callback_backoff_max)
            log.warning("batch %s webhook attempt %d failed: %s", batch_id, attempt, error)
            await store.batches.webhook_tried(batch_id, now_ms() + int(delay * 1000))
    return delivered


async def _post(runtime: Any, batch: Batch) -> str | None:
    """POST the batch's event; None when the receiver took it, else what went wrong."""
    event = {
        "object": "event",
        "id": f"evt_{batch.id}_{batch.status}",
        "type": f"batch.{batch.status}",
        "created_at": now_ms() // 1000,
        "data": {"id": batch.id},
    }
    try:
        response = await runtime.callbacks.post(batch.webhook_url, orjson.dumps(event), {})
    except Exception as exc:  # whatever it is, an attempt
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None if response.is_success else f"receiver answered HTTP {response.status_code}"
