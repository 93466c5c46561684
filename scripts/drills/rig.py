"""One drill's rig: callback receiver, mock upstream, API and workers on a fresh key prefix,
the load submitter and its ledger; torn down (processes ended, keys deleted) however the
drill ends."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from queue_service.dev.embedded_redis import EmbeddedRedis, free_port
from scripts.bench.lib import wait_for_port
from scripts.drills.check import DrillResult, drain, tally
from scripts.drills.load import Ledger, Submitter
from scripts.drills.procs import Fleet, Reaper, start_mock
from scripts.drills.receiver import CallbackReceiver
from scripts.drills.store import Probe

BASE_ENV = {
    "QUEUE_CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/32",  # the receiver is on loopback
    "QUEUE_CALLBACK_BACKOFF": "1",
    "QUEUE_CALLBACK_BACKOFF_MAX": "10",
}
"""Every drill's settings on top of its own: short callback retries, so outages recover fast."""


@dataclass(frozen=True)
class Options:
    quick: bool
    reaper: Reaper


@contextlib.asynccontextmanager
async def own_redis(opts: Options, *, appendonly: bool) -> AsyncIterator[EmbeddedRedis]:
    """A redis-server of the drill's own in a temporary directory: with AOF (fsync every
    second), or without any persistence (no AOF, no RDB snapshots)."""
    data_dir = Path(tempfile.mkdtemp(prefix="drill-redis-"))
    redis = EmbeddedRedis(data_dir, free_port(), appendonly=appendonly)
    try:
        await asyncio.to_thread(redis.start)
        opts.reaper.adopt(redis.process)
        yield redis
    finally:
        await asyncio.to_thread(redis.stop)
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass
class Rig:
    opts: Options
    name: str
    fleet: Fleet
    receiver: CallbackReceiver
    probe: Probe
    ledger: Ledger
    submitter: Submitter
    """Puts on the first API process's first queue (most drills have one of each)."""
    submitters: list[Submitter]
    """One per API process and queue, API by API: all record in the one ledger."""

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        opts: Options,
        name: str,
        redis_url: str,
        *,
        workers: int,
        concurrency: int,
        env: dict[str, str],
        apis: int = 1,
        queues: int = 1,
    ) -> AsyncIterator[Rig]:
        receiver = CallbackReceiver()
        await receiver.up()
        mock, mock_port = start_mock(opts.reaper, name)
        upstream_url = f"http://127.0.0.1:{mock_port}"
        fleet = Fleet(
            opts.reaper, name, redis_url, upstream_url, concurrency, BASE_ENV | env, api_count=apis
        )
        names = [f"drill-{name}"] if queues == 1 else [f"drill-{name}-{q}" for q in range(queues)]
        probe = Probe(redis_url, fleet.prefix, *names)
        ledger = Ledger()
        submitters = [
            Submitter(url, queue, receiver.url, ledger) for url in fleet.api_urls for queue in names
        ]
        try:
            await asyncio.to_thread(wait_for_port, mock_port, 60.0)
            await fleet.start(workers)
            yield cls(opts, name, fleet, receiver, probe, ledger, submitters[0], submitters)
        finally:
            for submitter in submitters:
                await submitter.close()
            await fleet.stop()
            await asyncio.to_thread(opts.reaper.end, [mock])
            await receiver.down()
            await delete_keys(probe)

    async def finish(
        self,
        result: DrillResult,
        *,
        dup_bound: int = 0,
        base: float = 30.0,
        ledger: Ledger | None = None,
        others: Collection[str] = (),
    ) -> DrillResult:
        """Wait for the callbacks (see `drain`), then count.

        `ledger`: count only these accepted jobs (default: all); `others` are accepted jobs
        the drill accounts for itself (their callbacks are not strangers)."""
        ledger = ledger or self.ledger
        drained = await drain(
            ledger, self.receiver, self.probe, base=base, sweeper=not self.opts.quick
        )
        views = await settled_views(self.submitter, ledger, self.receiver)
        excused = set(drained.waiting) if self.opts.quick else set()
        if drained.swept:
            result.notes.append(
                f"{drained.swept} callbacks came only from the sweeper (their worker died between"
                f" storing the outcome and settling the callback; waited up to"
                f" {drained.sweeper_wait:.0f}s more for it)"
            )
        if excused:
            result.notes.append(
                f"{len(excused)} finished jobs' callbacks are due for the sweeper after this"
                " quick run's wait (counted as late, not lost; a full run waits for them)"
            )
        result.dup_bound = dup_bound
        return tally(result, ledger, self.receiver, excused, views, others)


async def settled_views(
    submitter: Submitter, ledger: Ledger, receiver: CallbackReceiver
) -> dict[str, dict[str, Any]]:
    """Every accepted task's view, once the callbacks that arrived are recorded as such
    (or SETTLE_SECONDS passed: those left will be sent again)."""
    views = await submitter.views(list(ledger.accepted))
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        unsettled = [
            task
            for task, view in views.items()
            if task in receiver.deliveries
            and (view.get("callback") or {}).get("status") in ("pending", "retrying")
        ]
        if not unsettled:
            break
        await asyncio.sleep(0.5)
        views.update(await submitter.views(unsettled))
    return views


SETTLE_SECONDS = 15.0
"""How long a callback that arrived may take to be recorded as delivered (its worker hears the
receiver's answer, within QUEUE_CALLBACK_REQUEST_TIMEOUT)."""


async def delete_keys(probe: Probe) -> None:
    try:
        await probe.delete_keys()
    except Exception:
        print(f"   could not delete the keys of {probe.prefix}:", flush=True)
        traceback.print_exc()
    finally:
        await probe.close()
