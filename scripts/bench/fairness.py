"""Scenario `fairness`: tenants share a queue's workers by weight, not by who came first.

(a) Tenant A puts a big offline batch, then tenant B puts a few jobs on the same queue: B's
jobs start in turn beside A's (weighted fair queueing between tenants, store/scheduler.py),
not after A's backlog. B's wait is set against B alone on the idle system, and the A jobs
started meanwhile against A's backlog, which first come, first served would have put first.
(b) Two tenants weighted 3:1 in the keys file each put a backlog: the share of the starts
while both have one, against two tenants weighted 1:1. One stack serves every phase.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from redis.asyncio import Redis

from queue_service.store import Store
from queue_service.store.keys import Keys
from scripts.bench.lib import (
    MockUpstream,
    Put,
    Stack,
    put_all,
    put_request,
    report,
    summary_ms,
    wait_for_field,
)

CHAT = "/v1/chat/completions"
SLOTS = 16
TTFT = 0.02
IN_FLIGHT = 64
"""Puts in flight at once, on as many keep-alive connections."""
TENANTS = {"a": 1, "b": 1, "heavy": 3, "light": 1, "even-1": 1, "even-2": 1}
"""Tenant -> weight in the keys file; each tenant's key is `key-<tenant>-0000`."""


class Backlog(NamedTuple):
    a_puts: int
    put_s: float
    """How long A's puts took to be accepted."""
    a_started_during_puts: int
    fifo_ahead: int
    """A's jobs not started yet when B's first put was accepted."""
    a_meanwhile: list[int]
    """Per burst of B's: A's jobs started between B's first put and B's last start."""
    window_s: float
    """B's first put sent → B's last start, summed over the bursts."""
    alone_s: float
    """The same for B alone on the idle system."""
    b_wait: list[float]
    alone_wait: list[float]
    """Put sent → start of each of B's jobs, all bursts."""


class Share(NamedTuple):
    share: float
    """The first tenant's share of the starts while both had jobs waiting."""
    starts: int
    low: float
    high: float
    """The lowest and highest share over each run of CHUNK starts in a row."""


CHUNK = 200
BURSTS = 5
"""B's bursts behind A's backlog, and alone: the median wait of one burst varies a lot."""


async def fairness(args: argparse.Namespace, redis_url: str) -> None:
    big, small, each = (5_000, 50, 1_000) if args.quick else (50_000, 100, 3_000)
    with tempfile.TemporaryDirectory() as tmp, MockUpstream() as upstream:
        keys_file = Path(tmp) / "keys.toml"
        keys_file.write_text(
            "".join(
                f'[[key]]\nkey = "{_key(t)}"\ntenant = "{t}"\nweight = {w}\n\n'
                for t, w in TENANTS.items()
            )
        )
        env = {"QUEUE_ONLINE_RESERVED_SLOTS": "0", "QUEUE_API_KEYS_FILE": str(keys_file)}
        stack = Stack(upstream.url, concurrency=SLOTS, env_extra=env)
        await asyncio.to_thread(stack.start, redis_url)
        rig = Rig(stack, upstream, redis_url)
        try:
            even = await rig.share("even-1", "even-2", each)
            weighted = await rig.share("heavy", "light", each)
            backlog = await rig.backlog(big, small)
        finally:
            await rig.store.aclose()
            await asyncio.to_thread(stack.stop)
    _report(args, backlog, even, weighted, small, each)


def _key(tenant: str) -> str:
    return f"key-{tenant}-0000"


class Rig:
    """Puts as each tenant through the API and reads when each job reached the upstream."""

    def __init__(self, stack: Stack, upstream: MockUpstream, redis_url: str) -> None:
        self.stack = stack
        self.upstream = upstream
        self.redis_url = redis_url
        keys = Keys(stack.prefix)
        self.store = Store(Redis.from_url(redis_url), keys, redis_url=redis_url, retention_s=3600)

    def put(self, queue: str, tenant: str, text: str) -> tuple[str, bytes]:
        data = {
            "model": "m",
            "messages": [{"role": "user", "content": text}],
            "mock": {"ttft": TTFT, "tokens": 1},
        }
        body: dict[str, Any] = {
            "queue": queue,
            "endpoint": CHAT,
            "level": 1,
            "data": data,
            "callback_url": f"{self.upstream.url}/_mock/callbacks",
        }
        return text, put_request(self.stack.api_port, body, _key(tenant))

    async def put_all(self, requests: list[tuple[str, bytes]]) -> dict[str, Put]:
        return await put_all(self.stack.api_port, requests, IN_FLIGHT)

    async def finished(self, queue: str, puts: dict[str, Put]) -> None:
        """Until every one of these jobs has finished (so it reached the upstream)."""
        keys = [self.store.keys.task(queue, put.task_id) for put in puts.values()]
        await wait_for_field(self.redis_url, keys, "finished_at", within=1800)

    async def arrivals(self) -> dict[str, float]:
        """When each job reached the upstream (time.time()), by its message text."""
        async with httpx.AsyncClient(timeout=600) as client:
            recorded = (await client.get(f"{self.upstream.url}/_mock/requests")).json()
        return {r["body"]["messages"][-1]["content"]: r["received_at"] for r in recorded}

    async def share(self, first: str, second: str, each: int) -> Share:
        """Both tenants put `each` jobs on a paused queue (interleaved), which then resumes:
        the first tenant's share of the starts until either has none left waiting."""
        queue = f"bench-share-{first}"
        await self.store.queues.id(queue)
        await self.store.queues.set_paused(queue, True)
        requests = [
            self.put(queue, tenant, f"{tenant} {n}")
            for n in range(each)
            for tenant in (first, second)
        ]
        puts = await self.put_all(requests)
        await self.store.queues.set_paused(queue, False)
        await self.finished(queue, puts)
        arrivals = await self.arrivals()
        starts = {t: sorted(arrivals[f"{t} {n}"] for n in range(each)) for t in (first, second)}
        end = min(starts[first][-1], starts[second][-1])  # from here one has none waiting
        order = sorted((at, t == first) for t in (first, second) for at in starts[t] if at <= end)
        chunks = [order[i : i + CHUNK] for i in range(0, len(order) - CHUNK + 1, CHUNK)]
        shares = [sum(is_first for _, is_first in chunk) / CHUNK for chunk in chunks]
        firsts = sum(is_first for _, is_first in order)
        return Share(firsts / len(order), len(order), min(shares), max(shares))

    async def bursts(self, queue: str, label: str, small: int) -> list[dict[str, Put]]:
        """B puts `small` jobs at once, BURSTS times, each once the last has all finished."""
        done = []
        for burst in range(BURSTS):
            requests = [self.put(queue, "b", f"{label} {burst} {n}") for n in range(small)]
            puts = await self.put_all(requests)
            await self.finished(queue, puts)
            done.append(puts)
            await asyncio.sleep(0.5)  # callbacks sent; B has nothing waiting
        return done

    async def backlog(self, big: int, small: int) -> Backlog:
        """B alone on the idle system; then A's `big` puts and at once B's bursts."""
        queue = "bench-fair"
        alone = await self.bursts(queue, "alone", small)
        started = time.time()
        a_puts = await self.put_all([self.put(queue, "a", f"a {n}") for n in range(big)])
        put_s = time.time() - started
        behind = await self.bursts(queue, "b", small)
        arrivals = await self.arrivals()
        a_starts = [arrivals[tag] for tag in a_puts if tag in arrivals]

        def span(puts: dict[str, Put]) -> tuple[float, float]:
            return min(put.sent for put in puts.values()), max(arrivals[tag] for tag in puts)

        spans = [span(puts) for puts in behind]
        first_accepted = min(put.accepted for put in behind[0].values())
        a_put_end = max(put.accepted for put in a_puts.values())
        return Backlog(
            a_puts=big,
            put_s=put_s,
            a_started_during_puts=sum(1 for at in a_starts if at <= a_put_end),
            fifo_ahead=big - sum(1 for at in a_starts if at <= first_accepted),
            a_meanwhile=[sum(1 for at in a_starts if s < at <= e) for s, e in spans],
            window_s=sum(e - s for s, e in spans),
            alone_s=sum(e - s for s, e in map(span, alone)),
            b_wait=[arrivals[t] - put.sent for puts in behind for t, put in puts.items()],
            alone_wait=[arrivals[t] - put.sent for puts in alone for t, put in puts.items()],
        )


def _report(
    args: argparse.Namespace,
    backlog: Backlog,
    even: Share,
    weighted: Share,
    small: int,
    each: int,
) -> None:
    b_wait, alone = summary_ms(backlog.b_wait), summary_ms(backlog.alone_wait)
    ratio = b_wait[0] / alone[0]
    b_jobs, most = small * BURSTS, max(backlog.a_meanwhile)
    rate = (sum(backlog.a_meanwhile) + b_jobs) / backlog.window_s
    fifo_first_s = backlog.fifo_ahead / rate
    share = b_jobs / (b_jobs + sum(backlog.a_meanwhile))
    alone_rate = b_jobs / backlog.alone_s
    meanwhile_ok = most < 500
    wait_ok = ratio <= 2.0
    share_ok = abs(weighted.share - 0.75) <= 0.05
    table = [
        "| measured | this run | baseline, same run | goal | met |",
        "|---|--:|--:|---|---|",
        f"| (a) A's jobs started between B's first put and B's last start, most of "
        f"{BURSTS} bursts | **{most:,}** | first come, first served: {backlog.fifo_ahead:,} "
        f"(A's backlog when B first put) | < 500 | {_yes(meanwhile_ok)} |",
        f"| (a) B's wait, put sent → upstream, median / p99 ms "
        f"| **{b_wait[0]:.0f}** / {b_wait[1]:.0f} | B alone on the idle system: "
        f"{alone[0]:.0f} / {alone[1]:.0f} | median ≤ 2× | {ratio:.2f}× {_yes(wait_ok)} |",
        f"| (b) the weight-3 tenant's share of starts while both have jobs waiting "
        f"| **{weighted.share:.1%}** of {weighted.starts:,} | weights 1:1: {even.share:.1%} "
        f"of {even.starts:,} | 75 % ± 5 | {_yes(share_ok)} |",
        f"| (b) the same, lowest – highest over each {CHUNK} starts in a row "
        f"| {weighted.low:.1%} – {weighted.high:.1%} | {even.low:.1%} – {even.high:.1%} | | |",
    ]
    notes = [
        f"One API process, one worker with {SLOTS} slots (`QUEUE_CONCURRENCY`, "
        "`QUEUE_ONLINE_RESERVED_SLOTS=0`: all take offline work), the mock upstream (ttft "
        f"{TTFT * 1000:.0f} ms, 1 token) and Redis on the machine's cores; offline jobs "
        "(level 1) in callback mode to the mock's inbox; tenants and weights from a keys file "
        f"(`QUEUE_API_KEYS_FILE`). Puts go through the API, {IN_FLIGHT} in flight on "
        "keep-alive connections; a job starts when the mock receives it (`received_at`).",
        f"(a) B puts {small} jobs at once on the idle system (baseline), {BURSTS} times, each "
        f"once the last burst has finished; then A puts {backlog.a_puts:,} on the same queue "
        f"(accepted in {backlog.put_s:.0f} s, {backlog.a_puts / backlog.put_s:.0f}/s, while "
        f"the worker started {backlog.a_started_during_puts:,} of them), and B's {BURSTS} "
        f"bursts follow the same way (A started {', '.join(map(str, backlog.a_meanwhile))} "
        f"during them). Behind A, B's bursts took {backlog.window_s / BURSTS:.2f} s each, "
        f"first put to last start, at {rate:.0f} starts/s, B {share:.0%} of them; first "
        f"come, first served would have started B's first job only after A's "
        f"{backlog.fifo_ahead:,} waiting, about {fifo_first_s:.0f} s at that rate. Alone, a "
        f"burst took {backlog.alone_s / BURSTS:.2f} s ({alone_rate:.0f} starts/s). Those "
        f"rates predict a wait ratio of {alone_rate / (share * rate):.2f}× (rate alone ÷ B's "
        "share of the rate behind A): a burst given half the starts takes twice as long.",
        f"(b) Two tenants each put {each:,} jobs on a paused queue, interleaved; the queue "
        "resumes and the share counts the starts until one tenant's last job starts (both "
        "have jobs waiting throughout); weights 1:1, then 3:1 on another queue.",
        "Goals (issue 14): A starts fewer than 500 of its jobs while B's start, B's median "
        "wait within 2× of B alone, and the weight-3 tenant 75 % ± 5 of the starts. "
        f"This run: {_verdict(meanwhile_ok, wait_ok, share_ok)}.",
    ]
    report("fairness", args.command, table, notes)


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"


def _verdict(*met: bool) -> str:
    return "all three met" if all(met) else f"{sum(met)} of three met"
