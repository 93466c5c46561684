"""Scheduled offline jobs: cron parsing, clear errors, one put per tick with two workers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis

from queue_service.models import PutContext
from queue_service.settings import Settings
from queue_service.store.keys import Keys
from tests.helpers import eventually
from workers.schedule import ScheduleError, load_schedule, parse_field

from .conftest import running_worker

CONTEXT = PutContext(endpoints=frozenset({"/v1/chat/completions"}), max_timeout=3600)


def test_cron_fields() -> None:
    assert parse_field("*/15", 0, 59) == {0, 15, 30, 45}
    assert parse_field("1-3,7", 0, 23) == {1, 2, 3, 7}
    assert parse_field("10-20/5", 0, 59) == {10, 15, 20}
    with pytest.raises(ValueError, match="outside 0-23"):
        parse_field("24", 0, 23)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[job]\n", "not valid TOML"),
        (
            '[[job]]\nname="a"\ncron="* * *"\nqueue="q"\nendpoint="/v1/chat/completions"\n'
            'data={}\ncallback_url="http://x/y"\n',
            "five fields",
        ),
        (
            '[[job]]\nname="a"\ncron="* * * * *"\nqueue="q"\nendpoint="/v1/nope"\n'
            'data={}\ncallback_url="http://x/y"\n',
            "is not served",
        ),
    ],
)
def test_bad_schedules_are_refused_clearly(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "schedule.toml"
    path.write_text(text)
    with pytest.raises(ScheduleError, match=message):
        load_schedule(str(path), CONTEXT)


async def test_each_tick_puts_one_job_however_many_workers_run(
    settings: Settings, tmp_path: Path, redis: Redis, receiver: tuple[str, object]
) -> None:
    path = tmp_path / "schedule.toml"
    path.write_text(
        '[[job]]\nname = "tick"\ncron = "* * * * *"\nsecond = "*/2"\nqueue = "scheduled"\n'
        'endpoint = "/v1/chat/completions"\ncallback_url = "' + str(receiver[0]) + '"\n'
        'data = { model = "m", messages = [{ role = "user", content = "tick" }] }\n'
    )
    scheduled = settings.model_copy(update={"schedule_file": str(path)})
    keys = Keys(settings.key_prefix)

    async def two_ticks_put() -> bool:
        """The cron ticks every 2 s (second = "*/2"): two of them have put their job."""
        tasks = [key async for key in redis.scan_iter(match=keys.task("scheduled", "*"))]
        return len(tasks) >= 2

    async with running_worker(scheduled), running_worker(scheduled):
        await eventually(two_ticks_put, timeout=15, interval=0.1)
    created = [
        int(await redis.hget(key, "created_at") or 0)
        async for key in redis.scan_iter(match=keys.task("scheduled", "*"))
    ]
    assert len(created) >= 2
    ticks = Counter(stamp // 2000 for stamp in created)
    assert max(ticks.values()) == 1, ticks  # never two puts in one tick
