"""`queue-service dead-letters [--redeliver]`: list callbacks given up on, or send them again."""

from __future__ import annotations

import asyncio

from arq import create_pool
from arq.connections import RedisSettings
from redis.asyncio import Redis

from queue_service.settings import Settings
from queue_service.store.broker import Broker
from queue_service.store.keys import Keys

from .callbacks import DELIVER_CALLBACK


async def dead_letters(settings: Settings, redeliver: bool) -> int:
    """Print the dead letters (re-delivering them when asked); returns how many there were."""
    redis = Redis.from_url(settings.redis_url)
    broker = Broker(redis, Keys(settings.key_prefix), settings.result_retention)
    arq = await create_pool(RedisSettings.from_dsn(settings.redis_url)) if redeliver else None
    try:
        letters = await broker.dead_letter_ids()
        for queue, task_id in letters:
            record = await broker.load(queue, task_id)
            if record is None:
                print(f"{task_id}  (expired)")
                await broker.forget_dead_letter(queue, task_id)
                continue
            print(
                f"{task_id}  {record.callback_url}  attempts={record.callback_attempts}"
                f"  last error: {record.callback_last_error}"
            )
            if arq is not None:
                await broker.record_callback(record, "retrying", 0, "re-delivery requested")
                await arq.enqueue_job(
                    DELIVER_CALLBACK,
                    queue,
                    task_id,
                    1,
                    _job_id=broker.keys.callback_job_id(task_id, "redeliver"),
                    _queue_name=broker.keys.arq_queue,
                )
                await broker.forget_dead_letter(queue, task_id)
        verb = "queued for re-delivery" if redeliver else "dead letters"
        print(f"{len(letters)} {verb}")
        return len(letters)
    finally:
        if arq is not None:
            await arq.aclose()
        await redis.aclose()


def run(settings: Settings, redeliver: bool) -> None:
    asyncio.run(dead_letters(settings, redeliver))
