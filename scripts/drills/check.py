"""Accounting of a drill: wait for the callbacks, then count lost, duplicated, conflicting and
wrong ones against the ledger of accepted puts."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from scripts.drills.load import Ledger
from scripts.drills.receiver import CallbackReceiver, Delivery
from scripts.drills.store import Probe

SWEEPER_SLACK = 65.0
"""The callback sweeper runs at second 0 of each minute: a callback due at T is resent by
T + 60 s (plus the time to send it)."""
SWEEPER_CAP = 200.0
"""Longest extra wait for the sweeper (its settle time is 120 s after the job finished)."""


@dataclass
class DrillResult:
    name: str
    submitted: int = 0
    refused: int = 0
    completed: int = 0
    lost: int = 0
    lost_with_data: int = 0
    """Data-loss drills only: jobs accepted before Redis lost its data (no persistence) that
    never had a callback. Lost with the data by design: reported, not a failure."""
    late: int = 0
    """Quick runs only: finished jobs whose callback the sweeper resends after the run's wait."""
    duplicated: int = 0
    dup_bound: int = 0
    conflicting: int = 0
    wrong: int = 0
    resends: int = 0
    """Callbacks received but not recorded as delivered: the sweeper will send them again."""
    ghosts: int = 0
    strays: int = 0
    key_mismatches: int = 0
    max_delay: float = 0.0
    median_delay: float = 0.0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    """Guarantees of the drill's own that broke (beyond those counted above)."""
    error: str | None = None

    def failures(self) -> list[str]:
        """The guarantees this drill saw broken (empty: all held)."""
        broken = []
        if self.error:
            broken.append(f"drill error: {self.error}")
        elif not self.submitted:
            broken.append("no put was accepted")
        if self.lost:
            broken.append(f"{self.lost} accepted jobs lost")
        if self.conflicting:
            broken.append(f"{self.conflicting} jobs called back with different outcomes")
        if self.wrong:
            broken.append(f"{self.wrong} jobs ended with an unexpected outcome")
        if self.duplicated > self.dup_bound:
            broken.append(f"{self.duplicated} duplicate callbacks > {self.dup_bound} allowed")
        if self.key_mismatches:
            broken.append(f"{self.key_mismatches} callbacks with a wrong Idempotency-Key")
        return broken + self.broken

    @property
    def passed(self) -> bool:
        return not self.failures()


@dataclass
class Drained:
    waiting: dict[str, float] = field(default_factory=dict)
    """Jobs still without a callback that the sweeper will resend: id -> when due (epoch s)."""
    swept: int = 0
    """Jobs whose callback came only through the sweeper, after the first wait."""
    sweeper_wait: float = 0.0


async def drain(
    ledger: Ledger, receiver: CallbackReceiver, probe: Probe, *, base: float, sweeper: bool
) -> Drained:
    """Wait until every accepted job has had its callback, at most `base` seconds.

    When the only jobs still missing are finished ones whose callback the sweeper will resend
    (their worker died between storing the outcome and settling the callback), wait for the
    sweeper too if `sweeper`.
    """
    deadline = time.monotonic() + base
    drained = Drained()
    extended: list[str] = []
    while True:
        missing = [task for task in ledger.accepted if task not in receiver.deliveries]
        now = time.monotonic()
        if not missing or (now >= deadline and extended):
            drained.swept = sum(task in receiver.deliveries for task in extended)
            drained.waiting = await probe.awaiting_sweeper(missing) if missing else {}
            return drained
        if now < deadline:
            await asyncio.sleep(0.25)
            continue
        waiting = await probe.awaiting_sweeper(missing)
        if not sweeper or not waiting:
            drained.waiting = waiting
            return drained
        extended = list(waiting)
        wait = min(max(max(waiting.values()) - time.time() + SWEEPER_SLACK, 0.0), SWEEPER_CAP)
        drained.sweeper_wait = wait
        print(
            f"   {len(missing)} callbacks missing, {len(waiting)} of them due for the sweeper:"
            f" waiting up to {wait:.0f}s more",
            flush=True,
        )
        deadline = now + wait


def tally(
    result: DrillResult,
    ledger: Ledger,
    receiver: CallbackReceiver,
    excused: set[str],
    views: dict[str, dict[str, Any]],
    others: Collection[str] = (),
) -> DrillResult:
    """Fill `result` from what was accepted and what was called back (`others`: task ids
    accepted but accounted for elsewhere; their callbacks are not strangers)."""
    result.submitted = len(ledger.accepted)
    result.refused = len(ledger.refused)
    delays = []
    for task_id, job in ledger.accepted.items():
        deliveries = receiver.deliveries.get(task_id, [])
        if not deliveries:
            if task_id in excused:
                result.late += 1
            else:
                result.lost += 1
            continue
        result.completed += 1
        result.duplicated += len(deliveries) - 1
        if _callback_unsettled(views.get(task_id)):
            result.resends += 1
        outcomes = {(d.status, d.status_code) for d in deliveries}
        result.conflicting += len(outcomes) > 1
        first = deliveries[0]
        result.wrong += (first.status, first.status_code) != (
            job.expect.status,
            job.expect.status_code,
        )
        result.key_mismatches += sum(d.idempotency_key != task_id for d in deliveries)
        delays.append(first.at - job.sent_at)
    result.duplicated += result.resends
    if result.resends:
        result.notes.append(
            f"{result.resends} callbacks arrived but are not recorded as delivered: the sweeper"
            " will send them again (counted as duplicates)"
        )
    if delays:
        result.max_delay = max(delays)
        result.median_delay = statistics.median(delays)
    refusals = ledger.refusals()
    if refusals:
        listed = ", ".join(f"{n} × {reason}" for reason, n in refusals.items())
        result.notes.append(f"puts refused: {listed}")
    _count_strangers(result, ledger, receiver, set(others))
    result.notes += _view_notes(ledger, receiver, views)
    return result


def _callback_unsettled(view: dict[str, Any] | None) -> bool:
    """A callback the worker has not recorded as delivered (nor given up on)."""
    callback = (view or {}).get("callback") or {}
    return view is not None and callback.get("status") in ("pending", "retrying")


def _count_strangers(
    result: DrillResult, ledger: Ledger, receiver: CallbackReceiver, others: set[str]
) -> None:
    """Callbacks for task ids never accepted: of a refused put that ran anyway, or unknown."""
    refused_texts = {job.text for job in ledger.refused}
    for task_id, deliveries in receiver.deliveries.items():
        if task_id in ledger.accepted or task_id in others:
            continue
        if any(d.text in refused_texts for d in deliveries):
            result.ghosts += 1
        else:
            result.strays += 1
    if result.ghosts:
        result.notes.append(
            f"{result.ghosts} puts answered with an error were stored and ran anyway"
            " (the client, told to retry, would have run them twice)"
        )
    if result.strays:
        result.notes.append(f"{result.strays} callbacks for task ids never put")


def _view_notes(
    ledger: Ledger, receiver: CallbackReceiver, views: dict[str, dict[str, Any]]
) -> list[str]:
    notes = []
    reruns = sum((view.get("attempts") or 0) > 1 for view in views.values())
    if reruns:
        notes.append(f"{reruns} jobs ran more than once (taken over or handed back)")
    attempts = [(view.get("callback") or {}).get("attempts") or 0 for view in views.values()]
    if attempts and max(attempts) > 1:
        notes.append(
            f"callback attempts per job: up to {max(attempts)}"
            f" ({sum(a > 1 for a in attempts)} jobs needed more than one)"
        )
    missing = [task for task in ledger.accepted if task not in receiver.deliveries]
    for task_id in missing[:5]:
        view = views.get(task_id)
        notes.append(f"no callback for {task_id}: {_describe(view)}")
    duplicated = [task for task, ds in receiver.deliveries.items() if len(ds) > 1]
    for task_id in duplicated[:3]:
        notes.append(f"{task_id} called back {_outcomes(receiver.deliveries[task_id])}")
    return notes


def _describe(view: dict[str, Any] | None) -> str:
    if view is None:
        return "the task is gone"
    callback = view.get("callback") or {}
    return (
        f"status {view.get('status')} (attempts {view.get('attempts')}), callback"
        f" {callback.get('status')} after {callback.get('attempts')} attempts"
        f" (last error: {callback.get('last_error')})"
    )


def _outcomes(deliveries: list[Delivery]) -> str:
    counts = Counter(f"{d.status} {d.status_code}" for d in deliveries)
    return ", ".join(f"{n} × {outcome}" for outcome, n in counts.items())
