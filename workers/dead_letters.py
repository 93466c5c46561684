"""`queue-service dead-letters [--redeliver]`: list callbacks given up on, or send them again."""

from __future__ import annotations

import asyncio

from arq import create_pool
from arq.connections import RedisSettings

from queue_service.models import CallbackState
from queue_service.settings import Settings
from queue_service.store import Store

from .callbacks import DELIVER_CALLBACK


async def dead_letters(settings: Settings, redeliver: bool) -> int:
    """Print the dead letters (re-delivering them when asked); returns how many there were."""
    store = Store.from_settings(settings)
    ledger = store.callbacks
    arq = await create_pool(RedisSettings.from_dsn(settings.redis_url)) if redeliver else None
    try:
        letters = await ledger.dead_letters.all()
        for queue, task_id in letters:
            record = await store.tasks.load(queue, task_id)
            if record is None:
                print(f"{task_id}  (expired)")
                await ledger.dead_letters.forget(queue, task_id)
                continue
            print(
                f"{task_id}  {record.callback_url}  attempts={record.callback_attempts}"
                f"  last error: {record.callback_last_error}"
            )
            if arq is not None:
                await ledger.record_attempt(
                    record, CallbackState.RETRYING, 0, "re-delivery requested"
                )
                await arq.enqueue_job(
                    DELIVER_CALLBACK,
                    queue,
                    task_id,
                    1,
                    _job_id=store.keys.callback_job_id(task_id, "redeliver"),
                    _queue_name=store.keys.arq_queue,
                )
                await ledger.dead_letters.forget(queue, task_id)
        verb = "queued for re-delivery" if redeliver else "dead letters"
        print(f"{len(letters)} {verb}")
        return len(letters)
    finally:
        if arq is not None:
            await arq.aclose()
        await store.aclose()


def run(settings: Settings, redeliver: bool) -> None:
    asyncio.run(dead_letters(settings, redeliver))
