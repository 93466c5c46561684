"""Drills on a misbehaving upstream: `upstream-500` and `upstream-hang`."""

from __future__ import annotations

from scripts.drills.check import DrillResult
from scripts.drills.load import SUCCEEDED, Expect, Job
from scripts.drills.receiver import CallbackReceiver
from scripts.drills.rig import Options, Rig

ALWAYS_500 = Expect("failed", 500)
TIMED_OUT = Expect("timeout", 408)


async def upstream_500(opts: Options, redis_url: str) -> DrillResult:
    """Half the jobs get 500 from the upstream on their first 1-3 calls (three retries must
    carry them to success); one in ten gets 500 on every call (it must end failed with 500);
    none lost."""
    count = 80 if opts.quick else 240
    retries = 3
    result = DrillResult("upstream-500")
    env = {
        "QUEUE_UPSTREAM_MAX_RETRIES": str(retries),
        "QUEUE_UPSTREAM_RETRY_BACKOFF": "0.1",
    }
    async with Rig.open(opts, "upstream-500", redis_url, workers=2, concurrency=8, env=env) as rig:
        jobs = [_flaky_job(rig, index) for index in range(count)]
        await rig.submitter.steady(jobs, 12.0)
        failing = sum(job.expect == ALWAYS_500 for job in jobs)
        flaky = sum("fail_times" in job.payload["data"]["mock"] for job in jobs)
        result.notes.append(
            f"{flaky} jobs met 500 on their first 1-{retries} upstream calls, {failing} on every"
            f" call (they must end failed 500 after {retries} retries), the rest none;"
            f" QUEUE_UPSTREAM_MAX_RETRIES={retries}, retry backoff 0.1s doubling"
        )
        return await rig.finish(result)


def _flaky_job(rig: Rig, index: int) -> Job:
    if index % 10 == 9:
        return rig.submitter.job({"status": 500}, ALWAYS_500)
    if index % 2 == 1:
        job = rig.submitter.job({"status": 500, "fail_times": 1 + (index // 2) % 3})
        job.payload["data"]["mock"]["key"] = job.text  # its own counter of failures
        return job
    return rig.submitter.job({"ttft": 0.05})


async def upstream_hang(opts: Options, redis_url: str) -> DrillResult:
    """One job in three hangs at the upstream with a 3 s job timeout: it must end `timeout`
    with a 408 callback; the others must succeed; none lost."""
    count = 60 if opts.quick else 180
    timeout = 3
    result = DrillResult("upstream-hang")
    async with Rig.open(opts, "upstream-hang", redis_url, workers=2, concurrency=12, env={}) as rig:
        submit = rig.submitter
        jobs = [
            submit.job({"hang": True}, TIMED_OUT, timeout=timeout)
            if index % 3 == 2
            else submit.job({"ttft": 0.2}, SUCCEEDED, timeout=120)
            for index in range(count)
        ]
        await submit.steady(jobs, 8.0)
        result = await rig.finish(result)
        hung = [job for job in jobs if job.expect == TIMED_OUT]
        result.notes.insert(
            0,
            f"{len(hung)} of {count} jobs hang at the upstream with a {timeout}s job timeout;"
            f" their callbacks came {_spread(hung, rig.receiver)} after the put;"
            f" 2 workers × 12 slots",
        )
        return result


def _spread(jobs: list[Job], receiver: CallbackReceiver) -> str:
    delays = [
        receiver.deliveries[job.task_id][0].at - job.sent_at
        for job in jobs
        if job.task_id and receiver.deliveries.get(job.task_id)
    ]
    if not delays:
        return "never"
    return f"{min(delays):.1f}-{max(delays):.1f}s"
