"""The store's facade: built from settings, each process numbered for its task ids."""

from __future__ import annotations

from queue_service.models import ResponseMode
from queue_service.settings import Settings
from queue_service.store import Store, TaskId

from . import put_request


async def test_processes_get_numbers_of_their_own_for_task_ids(redis_url: str, prefix: str) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=prefix)
    first, second = Store.from_settings(settings), Store.from_settings(settings)
    try:
        numbers = [await first.instance.claim(), await second.instance.claim()]
        assert numbers[0] != numbers[1]
        submission = await second.tasks.prepare(put_request(mode=ResponseMode.STREAMING), "t", 5)
        task_id = TaskId.parse(submission.text_id)
        assert task_id is not None
        assert task_id.instance == numbers[1]
        assert await first.instance.claim(configured=42) == 42
        assert first.ids.instance == 42
    finally:
        await first.aclose()
        await second.aclose()


async def test_from_settings_uses_the_prefix_and_limits(redis_url: str, prefix: str) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=prefix, max_waiting=7)
    store = Store.from_settings(settings)
    try:
        await store.ping()
        assert store.keys.prefix == prefix
        assert store.tasks.max_waiting == 7
        assert store.tasks.retention_ms == settings.result_retention * 1000
    finally:
        await store.aclose()
