"""Drills on Redis losing its data (no persistence): `redis-flushall` and `redis-restart-empty`.

Both run a Redis of their own without AOF or RDB, two API processes and two workers, and put
callback jobs at a steady rate, spread over both APIs and two queues; mid-run the data goes
(FLUSHALL, or a stop and a start of an empty server on the same port). What must hold:

- no 5xx from either API once the outage ended: for each API, the outage window runs from
  the fault to the answer of its first put accepted among those sent once the old data was
  gone (a put sent in the window is counted as during, one sent after it as after; a put
  answered with anything but 200 after the window breaks the drill);
- every job accepted after the loss (its put sent once the old data was gone: FLUSHALL had
  returned, or the old server had exited) is found by GET on both API processes, and ends with
  exactly one callback of the expected outcome;
- task ids are unique over the whole run, before and after the loss.

Jobs accepted before the loss that had no callback yet when it struck may be lost with the
data: they are counted apart (the lost column's "+N before the loss"), not as failures.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from queue_service.dev.embedded_redis import EmbeddedRedis
from queue_service.store.ids import TaskId
from scripts.drills.check import DrillResult
from scripts.drills.load import SUCCEEDED, Job, Ledger, Submitter
from scripts.drills.rig import Options, Rig, own_redis

APIS, QUEUES, WORKERS, SLOTS = 2, 2, 2, 8
JOB = {"ttft": 0.3}
"""A third of a second upstream: a few jobs in flight on the workers when the data goes."""
ENV = {"QUEUE_VISIBILITY_TIMEOUT": "3"}


@dataclass(frozen=True)
class Loss:
    """When the data went (time.monotonic())."""

    began: float
    """The fault started: FLUSHALL sent, or SIGTERM sent to redis-server."""
    gone: float
    """The old data is gone for sure: FLUSHALL returned, or the old server exited."""
    back: float
    """A Redis answers again (the end of the outage; `gone` for FLUSHALL)."""
    detail: str


Fault = Callable[[EmbeddedRedis, Options, float], Awaitable[Loss]]


async def _dbsize(url: str) -> int:
    client = Redis.from_url(url, socket_connect_timeout=5)
    try:
        return int(await client.dbsize())
    finally:
        await client.aclose()


async def _flushall(redis: EmbeddedRedis, opts: Options, outage: float) -> Loss:
    client = Redis.from_url(redis.url, socket_connect_timeout=5)
    try:
        keys = int(await client.dbsize())
        began = time.monotonic()
        await client.flushall()
        gone = time.monotonic()
    finally:
        await client.aclose()
    detail = f"FLUSHALL of {keys} keys took {(gone - began) * 1000:.0f} ms"
    return Loss(began, gone, gone, detail)


async def _restart_empty(redis: EmbeddedRedis, opts: Options, outage: float) -> Loss:
    keys = await _dbsize(redis.url)
    began = time.monotonic()
    await asyncio.to_thread(redis.stop)
    gone = time.monotonic()
    left = sorted(p.name for p in redis.data_dir.iterdir() if p.name != "redis.log")
    for path in redis.data_dir.iterdir():  # there should be none: start truly empty
        if path.name != "redis.log":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    await asyncio.sleep(max(began + outage - time.monotonic(), 0.0))
    await asyncio.to_thread(redis.start)
    opts.reaper.adopt(redis.process)
    back = time.monotonic()
    detail = (
        f"redis-server ({keys} keys) stopped (SIGTERM; exited after {gone - began:.1f}s, files"
        f" left in its directory: {', '.join(left) or 'none'}) and started again empty on the"
        f" same port {back - began:.1f}s after the stop (DBSIZE {await _dbsize(redis.url)} a"
        " moment later: the service's processes writing again)"
    )
    return Loss(began, gone, back, detail)


async def redis_flushall(opts: Options, _redis_url: str) -> DrillResult:
    """FLUSHALL a Redis of the drill's own (no persistence) under steady load spread over two
    API processes and two queues, two workers: once the data is gone both APIs must answer
    puts without a 5xx, find every task accepted since on GET, and every such job must end
    with exactly one callback (jobs accepted before the flush may be lost with the data:
    counted apart); task ids unique."""
    return await _data_loss(opts, "redis-flushall", _flushall, outage=0.0)


async def redis_restart_empty(opts: Options, _redis_url: str) -> DrillResult:
    """The same as redis-flushall, but the Redis is stopped under load and started again
    empty (no AOF, no RDB) on the same port 5 s later (3 s with --quick): puts answered 503
    meanwhile were never accepted (counted as refused)."""
    return await _data_loss(opts, "redis-restart-empty", _restart_empty, outage=_outage(opts))


def _outage(opts: Options) -> float:
    return 3.0 if opts.quick else 5.0


async def _data_loss(opts: Options, name: str, fault: Fault, outage: float) -> DrillResult:
    before_s, after_s, rate = (6.0, 10.0, 16.0) if opts.quick else (15.0, 30.0, 30.0)
    result = DrillResult(name)
    async with (
        own_redis(opts, appendonly=False) as redis,
        Rig.open(
            opts,
            name,
            redis.url,
            workers=WORKERS,
            concurrency=SLOTS,
            env=ENV,
            apis=APIS,
            queues=QUEUES,
        ) as rig,
    ):
        count = int(rate * (before_s + outage + after_s))
        plan = [
            (submitter, submitter.job(JOB))
            for index in range(count)
            for submitter in [rig.submitters[index % len(rig.submitters)]]
        ]
        load = asyncio.create_task(_steady(plan, rate))
        try:
            await asyncio.sleep(before_s)
            loss = await fault(redis, opts, outage)
            await load
        finally:
            load.cancel()
        result.notes.append(
            f"{loss.detail}, {before_s:.0f}s into a load of {count} callback puts at"
            f" {rate:.0f}/s (jobs of ttft {JOB['ttft']} s) spread over {APIS} API processes ×"
            f" {QUEUES} queues; {WORKERS} workers × {SLOTS} slots"
        )
        accepted = rig.ledger.accepted
        after = Ledger(
            {task: job for task, job in accepted.items() if job.sent_at >= loss.gone},
            rig.ledger.refused,
        )
        before = [job for job in accepted.values() if job.sent_at < loss.gone]
        result = await rig.finish(
            result, base=45.0, ledger=after, others=[j.task_id or "" for j in before]
        )
        if result.duplicated:  # none allowed: these jobs met no fault
            result.broken.append(
                f"{result.duplicated} duplicate callbacks of jobs accepted after the loss"
            )
        _account_before(result, rig, before, loss)
        _windows(result, rig, plan, loss)
        await _lookups(result, rig, after, before, loss)
        _ids(result, plan, loss)
        await _leases(result, rig, plan, loss)
        return result


async def _steady(plan: list[tuple[Submitter, Job]], rate: float) -> None:
    """Put each job through its submitter (API and queue) at `rate` per second overall."""
    start = time.monotonic()
    puts: list[asyncio.Task[None]] = []
    try:
        for index, (submitter, job) in enumerate(plan):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            puts.append(asyncio.create_task(submitter.put(job)))
        await asyncio.gather(*puts)
    finally:
        for put in puts:
            put.cancel()


def _account_before(result: DrillResult, rig: Rig, before: list[Job], loss: Loss) -> None:
    """Jobs accepted before the loss: those called back before it struck are checked like
    the others (no duplicate, the right outcome); those still open may be lost with the data:
    counted in `lost_with_data`, and their duplicates allowed."""
    deliveries = rig.receiver.deliveries
    settled = [job for job in before if _first_at(rig, job) < loss.began]
    exposed = [job for job in before if _first_at(rig, job) >= loss.began]
    survived = [job for job in exposed if deliveries.get(job.task_id or "")]
    settled_dups = sum(len(deliveries[job.task_id or ""]) - 1 for job in settled)
    exposed_dups = sum(len(deliveries.get(job.task_id or "", [])) - 1 for job in survived)
    result.submitted += len(before)
    result.completed += len(settled) + len(survived)
    result.lost_with_data = len(exposed) - len(survived)
    result.duplicated += settled_dups + exposed_dups
    result.dup_bound = len(exposed)
    if settled_dups:
        result.broken.append(
            f"{settled_dups} duplicate callbacks of jobs called back before the loss"
        )
    wrong = [
        job
        for job in settled
        if (deliveries[job.task_id or ""][0].status, deliveries[job.task_id or ""][0].status_code)
        != (SUCCEEDED.status, SUCCEEDED.status_code)
    ]
    if wrong:
        result.broken.append(f"{len(wrong)} jobs called back before the loss ended wrong")
    outcomes = Counter(
        f"{d.status} {d.status_code}" for job in survived for d in deliveries[job.task_id or ""]
    )
    late = [_first_at(rig, job) - loss.began for job in survived]
    result.notes.append(
        f"accepted before the data was gone: {len(before)} jobs; {len(settled)} called back"
        f" before the fault; {len(exposed)} still open then (queued, running or calling"
        f" back): {len(survived)} of them called back anyway"
        + (
            f" ({', '.join(f'{n} × {o}' for o, n in outcomes.items())}, up to"
            f" {max(late):.1f}s after the fault)"
            if survived
            else ""
        )
        + f", {result.lost_with_data} lost with the data (not a failure),"
        f" {exposed_dups} duplicate callbacks among them"
    )


def _first_at(rig: Rig, job: Job) -> float:
    """When the job's first callback arrived (infinity: none did)."""
    deliveries = rig.receiver.deliveries.get(job.task_id or "")
    return deliveries[0].at if deliveries else float("inf")


def _windows(result: DrillResult, rig: Rig, plan: list[tuple[Submitter, Job]], loss: Loss) -> None:
    """Per API: the outage window (the fault → the answer of its first put accepted among
    those sent once the old data was gone) and the puts answered with an error before,
    during and after it. (A put sent between SIGTERM and the old server's exit may still be
    accepted by it: that ends no window.)"""
    parts = []
    for index, url in enumerate(rig.fleet.api_urls, 1):
        jobs = [job for submitter, job in plan if submitter.api_url == url and job.sent_at]
        ends = [job.answered_at for job in jobs if job.task_id and job.sent_at >= loss.gone]
        if not ends:
            result.broken.append(f"API {index} accepted no put after the fault")
            parts.append(f"API {index}: no put accepted after the fault")
            continue
        end = min(ends)
        phases: dict[str, list[Job]] = {"before": [], "during": [], "after": []}
        for job in jobs:
            if job.task_id:
                continue
            phase = (
                "before" if job.sent_at < loss.began else "during" if job.sent_at < end else "after"
            )
            phases[phase].append(job)
        fives = {phase: _count_5xx(failed) for phase, failed in phases.items()}
        if fives["after"] or fives["before"]:
            result.broken.append(
                f"API {index}: {fives['after']} puts answered 5xx after its outage window"
                f" ({fives['before']} before the fault)"
            )
        others = len(phases["after"]) - fives["after"]
        if others:
            result.broken.append(f"API {index}: {others} puts refused after its outage window")
        accepted_after = sum(1 for job in jobs if job.task_id and job.sent_at >= end)
        parts.append(
            f"API {index}: window {end - loss.began:.2f}s, 5xx {fives['before']} before /"
            f" {fives['during']} during / {fives['after']} after (of {len(jobs)} puts;"
            f" {accepted_after} accepted after the window"
            + (f", {_reasons(phases['during'])} during" if phases["during"] else "")
            + (f", {_reasons(phases['after'])} after" if phases["after"] else "")
            + ")"
        )
    result.notes.append(
        "outage window per API (from the fault to the answer of its first put accepted among"
        " those sent once the old data was gone): " + "; ".join(parts)
    )


def _count_5xx(jobs: list[Job]) -> int:
    return sum(1 for job in jobs if (job.http_status or 0) >= 500)


def _reasons(jobs: list[Job]) -> str:
    counts = Counter(job.refusal or "?" for job in jobs)
    return ", ".join(f"{n} × {reason}" for reason, n in counts.items())


async def _lookups(
    result: DrillResult, rig: Rig, after: Ledger, before: list[Job], loss: Loss
) -> None:
    """GET every task accepted after the loss on every API: each must find it, finished as
    its callback said; tasks accepted before it are looked up too (any 5xx breaks the drill)."""
    by_api = {}
    for index, url in enumerate(rig.fleet.api_urls, 1):
        submitter = next(s for s in rig.submitters if s.api_url == url)
        by_api[index] = (
            await _lookup_all(submitter, list(after.accepted)),
            await _lookup_all(submitter, [job.task_id for job in before if job.task_id]),
        )
    parts = []
    for index, (found_after, found_before) in by_api.items():
        missing = [task for task, (status, _) in found_after.items() if status != 200]
        wrong = [
            task
            for task, (status, view) in found_after.items()
            if status == 200 and not _matches(task, view, after.accepted[task], rig)
        ]
        fives = sum(
            1
            for status, _ in [*found_after.values(), *found_before.values()]
            if (status or 0) >= 500
        )
        if missing:
            sample = ", ".join(f"{t} ({found_after[t][0]})" for t in missing[:3])
            result.broken.append(
                f"API {index} did not find {len(missing)} tasks accepted after the loss: {sample}"
            )
        if wrong:
            result.broken.append(
                f"API {index} showed {len(wrong)} tasks accepted after the loss other than"
                f" called back (e.g. {wrong[0]})"
            )
        if fives:
            result.broken.append(f"API {index} answered {fives} GETs with a 5xx")
        before_codes = Counter(str(status) for status, _ in found_before.values())
        parts.append(
            f"API {index} found {len(found_after) - len(missing)} of {len(found_after)} accepted"
            f" after the loss ({len(wrong)} not as called back), and answered the"
            f" {len(found_before)} accepted before it "
            + ", ".join(f"{n} × {code}" for code, n in sorted(before_codes.items()))
        )
    result.notes.append("GET of every task on each API: " + "; ".join(parts))
    _, found_before = by_api[1]
    jobs = {job.task_id: job for job in before}
    kept = [(jobs[task], view) for task, (status, view) in found_before.items() if view]
    for job, view in kept[:3]:
        result.notes.append(
            f"{job.task_id}, accepted before the loss, outlived it: put sent"
            f" {job.sent_at - loss.began:+.3f}s from the fault and answered"
            f" {job.answered_at - loss.began:+.3f}s; now {view.get('status')}, callback"
            f" {(view.get('callback') or {}).get('status')}, called back"
            f" {len(rig.receiver.deliveries.get(job.task_id or '', []))} time(s)"
        )


async def _lookup_all(
    submitter: Submitter, task_ids: list[str]
) -> dict[str, tuple[int | None, dict[str, Any] | None]]:
    gate = asyncio.Semaphore(16)

    async def one(task_id: str) -> tuple[int | None, dict[str, Any] | None]:
        async with gate:
            return await submitter.lookup(task_id)

    answers = await asyncio.gather(*(one(task_id) for task_id in task_ids))
    return dict(zip(task_ids, answers, strict=True))


def _matches(task_id: str, view: dict[str, Any] | None, job: Job, rig: Rig) -> bool:
    """The view is of this task, on its queue, finished with the outcome called back."""
    if view is None or view.get("task_id") != task_id:
        return False
    if view.get("queue") != job.payload["queue"]:
        return False
    deliveries = rig.receiver.deliveries.get(task_id)
    if not deliveries:  # no callback (counted as lost or late already)
        return True
    return (view.get("status"), view.get("status_code")) == (
        deliveries[0].status,
        deliveries[0].status_code,
    )


def _ids(result: DrillResult, plan: list[tuple[Submitter, Job]], loss: Loss) -> None:
    """Task ids unique over the run; which queue ids and instance numbers they carry."""
    ids = [job.task_id for _, job in plan if job.task_id]
    repeated = len(ids) - len(set(ids))
    if repeated:
        result.broken.append(f"{repeated} task ids given twice")
    carried: dict[str, dict[str, set[int]]] = {"before": {}, "after": {}}
    instances: dict[str, set[int]] = {"before": set(), "after": set()}
    for submitter, job in plan:
        parsed = TaskId.parse(job.task_id or "")
        if parsed is None:
            continue
        phase = "before" if job.sent_at < loss.gone else "after"
        carried[phase].setdefault(submitter.queue, set()).add(parsed.queue_id)
        instances[phase].add(parsed.instance)
    queues = ", ".join(
        f"{queue} {_set(carried['before'].get(queue))} → {_set(carried['after'].get(queue))}"
        for queue in sorted({*carried["before"], *carried["after"]})
    )
    result.notes.append(
        f"task ids: {len(ids)} accepted, {len(set(ids))} distinct; queue ids before → after the"
        f" loss: {queues}; API instance numbers {_set(instances['before'])} →"
        f" {_set(instances['after'])}"
    )


async def _leases(
    result: DrillResult, rig: Rig, plan: list[tuple[Submitter, Job]], loss: Loss
) -> None:
    """The instance numbers the APIs gave task ids after the loss are leased again (held in
    Redis, so no process started from now on can take them)."""
    numbers = {
        parsed.instance
        for _, job in plan
        if job.sent_at >= loss.gone and (parsed := TaskId.parse(job.task_id or ""))
    }
    redis, keys = rig.probe.redis, rig.probe.keys
    held = [key async for key in redis.scan_iter(match=keys.instance_lease(0)[:-1] + "*")]
    unleased = [n for n in sorted(numbers) if not await redis.exists(keys.instance_lease(n))]
    if unleased:
        result.broken.append(f"instance numbers {unleased} in use but not leased after the loss")
    result.notes.append(
        f"instance leases held at the end: {len(held)} ({APIS} APIs + {WORKERS} workers);"
        f" the APIs' numbers {'all' if not unleased else 'NOT all'} among them"
    )


def _set(values: set[int] | None) -> str:
    return "{" + ", ".join(str(v) for v in sorted(values or ())) + "}"
