"""Drills on workers dying under load: `kill-worker` (SIGKILL), `sigterm-worker` and
`kill-follower` (SIGKILL while following Midjourney tasks)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter

import httpx

from scripts.drills.check import DrillResult
from scripts.drills.rig import Options, Rig

SHORT_JOB = {"ttft": 0.2, "tokens": 8, "token_latency": 0.04}
"""About half a second upstream: enough of them in flight on a worker when it is killed."""


async def kill_worker(opts: Options, redis_url: str) -> DrillResult:
    """kill -9 the oldest of three workers under steady load and start a replacement at once,
    ten times (four with --quick), then drain: no job lost, duplicates at most the jobs in
    flight on the killed workers."""
    kills, count, interval = (4, 150, 3.0) if opts.quick else (10, 500, 3.0)
    workers, slots, visibility = 3, 8, 2
    result = DrillResult("kill-worker")
    env = {"QUEUE_VISIBILITY_TIMEOUT": str(visibility)}
    async with Rig.open(
        opts, "kill-worker", redis_url, workers=workers, concurrency=slots, env=env
    ) as rig:
        jobs = [rig.submitter.job(SHORT_JOB) for _ in range(count)]
        load = asyncio.create_task(rig.submitter.steady(jobs, count / (kills * interval + 3)))
        held: list[int] = []
        try:
            for _ in range(kills):
                await asyncio.sleep(interval)
                victim = rig.fleet.oldest_worker()
                held.append(await rig.probe.in_flight(victim.pid))
                rig.fleet.kill9(victim)
                rig.fleet.start_worker()
            await load
        finally:
            load.cancel()
        result.notes.append(
            f"{kills} × kill -9 of the oldest of {workers} workers ({slots} slots each) every"
            f" {interval:.0f}s, each replaced at once; jobs (ttft 0.2 s, 8 tokens 40 ms apart)"
            f" in flight on the victim"
            f" at each kill: {held}; visibility timeout {visibility}s"
        )
        return await rig.finish(result, dup_bound=sum(held))


async def sigterm_worker(opts: Options, redis_url: str) -> DrillResult:
    """SIGTERM the oldest of two workers under load and start a replacement, four times (two
    with --quick): most jobs are short, some end about when the shutdown grace does, some
    outlast it (handed back), and the receiver takes a second to answer: no job lost, no
    duplicate."""
    terms, count, interval = (2, 90, 5.0) if opts.quick else (4, 240, 6.0)
    grace, slots, answer_after = 4, 10, 1.0
    result = DrillResult("sigterm-worker")
    env = {"QUEUE_SHUTDOWN_GRACE": str(grace), "QUEUE_VISIBILITY_TIMEOUT": "3"}
    async with Rig.open(
        opts, "sigterm-worker", redis_url, workers=2, concurrency=slots, env=env
    ) as rig:
        rig.receiver.answer_after = answer_after
        jobs = [
            rig.submitter.job({"ttft": _sigterm_job_seconds(index, grace)})
            for index in range(count)
        ]
        load = asyncio.create_task(rig.submitter.steady(jobs, count / (terms * interval + 4)))
        held: list[int] = []
        exits: list[asyncio.Task[tuple[float, int | None]]] = []
        try:
            for _ in range(terms):
                await asyncio.sleep(interval)
                victim = rig.fleet.oldest_worker()
                held.append(await rig.probe.in_flight(victim.pid))
                rig.fleet.sigterm(victim)
                exits.append(asyncio.create_task(_exit(victim, time.monotonic())))
                rig.fleet.start_worker()
            await load
            ended = await asyncio.gather(*exits)
        finally:
            load.cancel()
        slowest = max(seconds for seconds, _ in ended)
        result.notes.append(
            f"{terms} × SIGTERM of the oldest of 2 workers ({slots} slots) every {interval:.0f}s,"
            f" each replaced at once; shutdown grace {grace}s; jobs take 0.2s, but two in ten"
            f" {grace - 1}-{grace + 0.5:.1f}s (end about with the grace) and one in ten"
            f" {grace + 3}s (outlasts it: handed back); the receiver answers callbacks after"
            f" {answer_after}s; jobs in flight on the victim:"
            f" {held}; victims exited {slowest:.1f}s after SIGTERM at the latest, exit codes"
            f" {sorted({code for _, code in ended}, key=str)}"
        )
        if slowest > grace + 5:
            result.notes.append(f"a worker took {slowest:.1f}s to exit: more than grace + 5s")
        return await rig.finish(result, dup_bound=0)


async def kill_follower(opts: Options, redis_url: str) -> DrillResult:
    """kill -9 the oldest of two workers while they follow Midjourney tasks (each 4-8 s
    upstream) and start a replacement at once, six times (three with --quick): no job lost,
    and no submit sent twice except for jobs whose worker died before the upstream's answer
    was stored."""
    kills, count, interval = (3, 80, 3.0) if opts.quick else (6, 240, 3.0)
    slots = 8
    result = DrillResult("kill-follower")
    env = {
        "QUEUE_VISIBILITY_TIMEOUT": "2",
        "QUEUE_TASK_POLL_INTERVAL": "0.5",
        "QUEUE_TASK_POLL_MAX_INTERVAL": "2",
    }
    async with Rig.open(
        opts, "kill-follower", redis_url, workers=2, concurrency=slots, env=env
    ) as rig:
        jobs = [
            rig.submitter.midjourney_job({"duration": 4 + n % 5, "steps": 4}) for n in range(count)
        ]
        load = asyncio.create_task(rig.submitter.steady(jobs, count / (kills * interval + 2)))
        held: list[int] = []
        followed: list[int] = []
        try:
            for _ in range(kills):
                await asyncio.sleep(interval)
                victim = rig.fleet.oldest_worker()
                held.append(await rig.probe.in_flight(victim.pid))
                followed.append(await rig.probe.followed())
                rig.fleet.kill9(victim)
                rig.fleet.start_worker()
            await load
        finally:
            load.cancel()
        finished = await rig.finish(result, dup_bound=sum(held) + kills)
        async with httpx.AsyncClient() as client:
            recorded = (await client.get(f"{rig.fleet.upstream_url}/_mock/requests")).json()
    submits = Counter(r["body"]["prompt"] for r in recorded if r["path"] == "/mj/submit/imagine")
    twice = sum(n > 1 for n in submits.values())
    reads = sum(r["path"] == "/mj/task/list-by-condition" for r in recorded)
    result.notes.append(
        f"{kills} × kill -9 of the oldest of 2 workers ({slots} slots each) every"
        f" {interval:.0f}s, each replaced at once; Midjourney jobs of 4-8 s upstream, read"
        f" every 0.5-2 s; at each kill, jobs being submitted on the victim: {held}, tasks"
        f" followed (by every worker): {followed}; jobs submitted twice: {twice} (allowed:"
        f" those mid-submit on a victim, {sum(held)}); {len(submits)} jobs submitted,"
        f" {reads} read requests"
    )
    if twice > sum(held):
        result.broken.append(f"{twice} jobs submitted twice > {sum(held)} mid-submit at a kill")
    return finished


def _sigterm_job_seconds(index: int, grace: float) -> float:
    if index % 10 == 9:
        return grace + 3.0
    if index % 10 in (3, 6):
        return grace - 1.0 + (index // 10) % 7 * 0.25
    return 0.2


async def _exit(process: subprocess.Popen[bytes], since: float) -> tuple[float, int | None]:
    """Seconds until `process` exited (SIGKILL after 60 s), and its exit code."""
    try:
        code = await asyncio.to_thread(process.wait, 60.0)
    except subprocess.TimeoutExpired:
        process.kill()
        await asyncio.to_thread(process.wait)
        return time.monotonic() - since, None
    return time.monotonic() - since, code
