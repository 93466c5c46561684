"""Scheduled offline jobs from `QUEUE_SCHEDULE_FILE` (TOML), put by arq's cron:

    [[job]]
    name = "nightly-digest"
    cron = "30 2 * * *"        # minute hour day month weekday (0 or 7 = Sunday)
    queue = "batch"
    endpoint = "/v1/chat/completions"
    data = { model = "deepseek-r1", messages = [{ role = "user", content = "Digest" }] }
    callback_url = "https://example.com/digest"

Each tick puts one level-1 job however many workers run (arq's unique cron job ids).
An optional `second = "*/10"` gives finer ticks.
"""

from __future__ import annotations

from typing import Any

from arq.cron import CronJob, cron
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from queue_service.config_files import load_toml
from queue_service.endpoints import SERVED_ENDPOINTS
from queue_service.errors import ConfigFileError
from queue_service.models import NO_AUTH_TENANT, PutContext, PutRequest
from queue_service.store.tasks import Tasks
from queue_service.validation import describe

_RANGES = {"minute": (0, 59), "hour": (0, 23), "day": (1, 31), "month": (1, 12), "weekday": (0, 7)}


class ScheduleError(ConfigFileError):
    """The schedule file is missing, unreadable or invalid."""


class ScheduledJob(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    cron: str
    second: str = "0"
    queue: str
    endpoint: str
    data: dict[str, Any]
    callback_url: str
    timeout: int | None = None


class ScheduleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job: list[ScheduledJob] = []


def parse_field(text: str, low: int, high: int) -> set[int]:
    """One cron field (`*`, `*/n`, `a-b`, `a-b/n`, `a,b`) -> the values it allows."""
    values: set[int] = set()
    for part in text.split(","):
        spec, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if spec == "*":
            start, end = low, high
        elif "-" in spec:
            start, end = (int(x) for x in spec.split("-", 1))
        else:
            start = end = int(spec)
        if not (low <= start <= end <= high) or step < 1:
            raise ValueError(f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def _cron_fields(job: ScheduledJob) -> dict[str, set[int]]:
    parts = job.cron.split()
    if len(parts) != 5:
        raise ValueError("cron needs five fields: minute hour day month weekday")
    fields = {
        name: parse_field(part, *_RANGES[name]) for name, part in zip(_RANGES, parts, strict=True)
    }
    fields["weekday"] = {(day - 1) % 7 for day in fields["weekday"]}  # cron Sun=0, arq Mon=0
    fields["second"] = parse_field(job.second, 0, 59)
    return {name: values for name, values in fields.items() if values != _everything(name)}


def _everything(name: str) -> set[int]:
    low, high = _RANGES.get(name, (0, 59))
    return (
        {(d - 1) % 7 for d in range(low, high + 1)}
        if name == "weekday"
        else set(range(low, high + 1))
    )


def load_schedule(path: str | None, context: PutContext) -> list[tuple[ScheduledJob, PutRequest]]:
    if path is None:
        return []
    parsed = load_toml(path, ScheduleFile, "QUEUE_SCHEDULE_FILE", ScheduleError)
    try:
        entries = []
        for job in parsed.job:
            _cron_fields(job)
            body = {
                "queue": job.queue,
                "endpoint": job.endpoint,
                "level": 1,
                "data": job.data,
                "callback_url": job.callback_url,
                "timeout": job.timeout,
            }
            entries.append((job, PutRequest.model_validate(body, context=context, strict=False)))
        return entries
    except ValidationError as exc:
        raise ScheduleError(f"QUEUE_SCHEDULE_FILE {path}: {describe(exc)}") from exc
    except ValueError as exc:
        raise ScheduleError(f"QUEUE_SCHEDULE_FILE {path}: {exc}") from exc


def schedule_cron_jobs(path: str | None, prefix: str, max_timeout: int) -> list[CronJob]:
    """arq cron jobs putting each scheduled job on its ticks (checked here: clear errors)."""
    context = PutContext(endpoints=SERVED_ENDPOINTS, max_timeout=max_timeout)
    jobs = []
    for entry, request in load_schedule(path, context):

        async def put_scheduled(ctx: dict[str, Any], request: PutRequest = request) -> str:
            runtime = ctx["runtime"]
            tasks: Tasks = runtime.store.tasks
            timeout = request.timeout or runtime.settings.callback_timeout
            return await tasks.enqueue(request, NO_AUTH_TENANT, timeout)

        jobs.append(
            cron(
                put_scheduled,
                name=f"{prefix}:schedule:{entry.name}",
                keep_result=3600,  # arq's unique job id then holds across workers
                **_cron_fields(entry),  # type: ignore[arg-type]
            )
        )
    return jobs
