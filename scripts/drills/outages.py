"""Drills on the service's neighbours going away: `redis-restart` and `receiver-down`."""

from __future__ import annotations

import asyncio
import time

from scripts.drills.check import DrillResult
from scripts.drills.load import Job, Ledger
from scripts.drills.receiver import CallbackReceiver
from scripts.drills.rig import Options, Rig, own_redis


async def redis_restart(opts: Options, _redis_url: str) -> DrillResult:
    """Stop a Redis of the drill's own (AOF, fsync every second) under load and start it again
    on the same port and data 5 s later, twice (once, 3 s, with --quick); the API and workers
    must recover by themselves: no accepted job lost (puts answered 503 meanwhile were never
    accepted: counted as refused)."""
    restarts, outage, count, interval = (1, 3.0, 100, 6.0) if opts.quick else (2, 5.0, 300, 8.0)
    result = DrillResult("redis-restart")
    async with (
        own_redis(opts, appendonly=True) as redis,
        Rig.open(
            opts,
            "redis-restart",
            redis.url,
            workers=2,
            concurrency=8,
            env={"QUEUE_VISIBILITY_TIMEOUT": "3"},
        ) as rig,
    ):
        jobs = [rig.submitter.job({"ttft": 0.5}) for _ in range(count)]
        duration = restarts * (interval + outage) + interval
        load = asyncio.create_task(rig.submitter.steady(jobs, count / duration))
        held: list[int] = []
        back: list[float] = []
        try:
            for _ in range(restarts):
                await asyncio.sleep(interval)
                held.append(await _in_flight(rig))
                await asyncio.to_thread(redis.stop)
                await asyncio.sleep(outage)
                await asyncio.to_thread(redis.start)
                opts.reaper.adopt(redis.process)
                back.append(time.monotonic())
            await load
        finally:
            load.cancel()
        result.notes.append(
            f"{restarts} × redis-server stopped (SIGTERM) and started again {outage:.0f}s later"
            f" on the same port and AOF, under load (jobs of ttft 0.5 s); 2 workers × 8 slots,"
            f" visibility timeout 3s; jobs in flight at each stop: {held}"
        )
        result = await rig.finish(result, dup_bound=sum(held), base=45.0)
        result.notes.append(_recovery(rig.ledger, rig.receiver, back))
        return result


async def _in_flight(rig: Rig) -> int:
    try:
        return await rig.probe.in_flight()
    except Exception as exc:
        print(f"   could not count the jobs in flight: {exc}", flush=True)
        return 0


def _recovery(ledger: Ledger, receiver: CallbackReceiver, back: list[float]) -> str:
    """How soon after each restart a put was accepted and its job called back."""
    parts = []
    for at in back:
        after = sorted((job for job in ledger.accepted.values() if job.sent_at >= at), key=_sent)
        if not after:
            parts.append("no put accepted after the restart")
            continue
        first = after[0]
        arrived = [d.at for job in after for d in receiver.deliveries.get(job.task_id or "", [])]
        called = f", first callback {min(arrived) - at:.1f}s" if arrived else ""
        parts.append(f"first put accepted {first.sent_at - at:.1f}s{called}")
    return "after each restart: " + "; ".join(parts)


def _sent(job: Job) -> float:
    return job.sent_at


async def receiver_down(opts: Options, redis_url: str) -> DrillResult:
    """The callback receiver refuses connections for 120 s (20 s with --quick) while jobs
    finish, then comes back: every callback arrives once it is back, none lost, none twice."""
    outage = 20.0 if opts.quick else 120.0
    before, during, after = (20, 60, 20) if opts.quick else (50, 200, 50)
    result = DrillResult("receiver-down")
    async with Rig.open(opts, "receiver-down", redis_url, workers=2, concurrency=8, env={}) as rig:
        submit = rig.submitter
        await submit.steady([submit.job({"ttft": 0.2}) for _ in range(before)], 10.0)
        await rig.receiver.down()
        down_at = time.monotonic()
        outage_jobs = [submit.job({"ttft": 0.2}) for _ in range(during)]
        await submit.steady(outage_jobs, during / (outage * 0.75))
        await asyncio.sleep(max(down_at + outage - time.monotonic(), 0.0))
        await rig.receiver.up()
        up_at = time.monotonic()
        await submit.steady([submit.job({"ttft": 0.2}) for _ in range(after)], 10.0)
        result = await rig.finish(result, base=40.0)
        arrived = [
            d.at for job in outage_jobs for d in rig.receiver.deliveries.get(job.task_id or "", [])
        ]
        early = sum(at < up_at for at in arrived)
        last = f"the last {max(arrived) - up_at:.1f}s after" if arrived else "none after"
        result.notes.insert(
            0,
            f"receiver refused connections for {outage:.0f}s ({before} jobs before, {during}"
            f" during, {after} after); the callbacks of the jobs put during the outage arrived"
            f" {last} it came back ({early} before it did); callback backoff 1s doubling to 10s",
        )
        return result
