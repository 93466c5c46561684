"""Fault drills of queue-service: real processes on loopback, faults injected under load, and
every accepted job accounted for.

    python -m scripts.drills [drill ...] [--quick]

Drills: kill-worker, sigterm-worker, kill-follower, redis-restart, redis-flushall,
redis-restart-empty, receiver-down, upstream-500, upstream-hang (default: all). Each runs the API,
workers and the mock upstream as processes of their own on a fresh key prefix, with a callback
receiver in this process, and checks that every put the API accepted ends with its callback:
none lost, no two callbacks of one job with different outcomes, duplicates only within the
bound the drill allows. Prints a table and writes it to DRILLS.md; exits 1 when any guarantee
broke. Every process started is ended, and every key deleted, however the run ends.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import shlex
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from scripts.bench.lib import ROOT, machine, redis_for_bench
from scripts.drills.check import DrillResult
from scripts.drills.data_loss import redis_flushall, redis_restart_empty
from scripts.drills.outages import receiver_down, redis_restart
from scripts.drills.procs import Reaper
from scripts.drills.rig import Options
from scripts.drills.upstream import upstream_500, upstream_hang
from scripts.drills.workers import kill_follower, kill_worker, sigterm_worker

Drill = Callable[[Options, str], Awaitable[DrillResult]]

DRILLS: dict[str, Drill] = {
    "kill-worker": kill_worker,
    "sigterm-worker": sigterm_worker,
    "kill-follower": kill_follower,
    "redis-restart": redis_restart,
    "redis-flushall": redis_flushall,
    "redis-restart-empty": redis_restart_empty,
    "receiver-down": receiver_down,
    "upstream-500": upstream_500,
    "upstream-hang": upstream_hang,
}
DATA_LOSS_DRILLS = ("redis-flushall", "redis-restart-empty")
DATA_LOSS = [
    "**Losing Redis's data.** redis-flushall and redis-restart-empty run a Redis without",
    "persistence, two API processes and two workers, and take its data away under load",
    "(FLUSHALL; a stop and a start of an empty server on the same port). Nothing restarts the",
    "service's processes: they must heal by themselves. Where the guarantees held, a put after",
    "the loss found its queue's id missing, registered the queue again and was accepted, so",
    "neither API answered a 5xx once its outage window was over (from the fault to its first",
    "put accepted among those sent once the old data was gone); every job accepted after the",
    "loss was found by GET on both APIs and called back exactly once (the workers recreated the",
    "lost streams and groups), and task ids stayed unique (the processes leased their instance",
    "numbers again). Jobs accepted before the loss and not yet called back when it struck may",
    'go with the data: the lost column shows them as "+N before the loss" (not a failure), and',
    "their duplicates are the only ones allowed.",
    "",
]
TIME_LIMIT = {"quick": 90.0, "full": 330.0}
"""Seconds one drill may take before it is stopped (and counted as failed)."""

HEADER = [
    "| drill | jobs submitted | completed | lost | duplicated | max delay | refused"
    " | duplicates allowed | guarantees |",
    "|---|--:|--:|--:|--:|--:|--:|--:|---|",
]


def row(result: DrillResult) -> str:
    verdict = "held" if result.passed else "BROKEN: " + "; ".join(result.failures())
    late = f" (+{result.late} late)" if result.late else ""
    with_data = f" (+{result.lost_with_data} before the loss)" if result.lost_with_data else ""
    cells = [
        result.name,
        str(result.submitted),
        f"{result.completed}{late}",
        f"{result.lost}{with_data}",
        str(result.duplicated),
        f"{result.max_delay:.1f} s",
        str(result.refused),
        str(result.dup_bound),
        verdict,
    ]
    return "| " + " | ".join(cells) + " |"


def notes(results: list[DrillResult]) -> list[str]:
    lines = []
    for result in results:
        lines.append(
            f"- **{result.name}** ({result.seconds:.0f} s; median delay"
            f" {result.median_delay:.2f} s): " + "; ".join(result.notes or ["-"])
        )
    return lines


def write_markdown(command: str, results: list[DrillResult], log_dir: Path) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = "\n".join(
        [
            "# Drills",
            "",
            "Fault drills from `python -m scripts.drills`: the API, workers and mock upstream run",
            "as real processes on loopback, a callback receiver records every callback by task id,",
            "and faults are injected under load. Every put the API accepted (HTTP 200) must end",
            "with a callback: *lost* counts accepted jobs without one; *duplicated* counts",
            "callbacks beyond the first of a job (allowed only up to the jobs in flight on the",
            "processes killed); *refused* counts puts answered with an error (never accepted);",
            "*max delay* runs from sending the put to receiving the job's first callback.",
            "A job's callbacks must never disagree on the outcome, and each must be the",
            "outcome the drill expects (succeeded, or failed 500 / timeout 408 by design).",
            "",
            f"`{command}` on {stamp}, {machine()}",
            "",
            *HEADER,
            *(row(result) for result in results),
            "",
            *notes(results),
            "",
            *(DATA_LOSS if any(r.name in DATA_LOSS_DRILLS for r in results) else []),
            "## The drills",
            "",
            *(f"- **{name}**: {_summary(drill)}" for name, drill in DRILLS.items()),
            "",
            "`--quick` runs smaller and shorter drills (the receiver is down 20 s, not 120 s) and"
            " does not wait for the callback sweeper (it resends a callback two to three minutes"
            " after its job finished): a callback still due for it is counted as late, not lost.",
            "",
            f"Process logs of the run: `{log_dir}` (temporary).",
            "",
        ]
    )
    (ROOT / "DRILLS.md").write_text(text)


def _summary(drill: Drill) -> str:
    """The first paragraph of a drill's docstring, on one line."""
    return " ".join((drill.__doc__ or "").split("\n\n")[0].split())


async def run_one(name: str, opts: Options, redis_url: str) -> DrillResult:
    """One drill within its time limit; a drill that crashes or overruns counts as failed."""
    print(f"== {name}", flush=True)
    started = time.monotonic()
    limit = TIME_LIMIT["quick" if opts.quick else "full"]
    try:
        async with asyncio.timeout(limit):
            result = await DRILLS[name](opts, redis_url)
    except Exception as exc:
        traceback.print_exc()
        detail = f"over its {limit:.0f}s limit" if isinstance(exc, TimeoutError) else repr(exc)
        result = DrillResult(name, error=detail)
    result.seconds = time.monotonic() - started
    print(HEADER[0] + "\n" + row(result), flush=True)
    for note in result.notes:
        print(f"   - {note}", flush=True)
    return result


async def run(args: argparse.Namespace, reaper: Reaper) -> list[DrillResult]:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    opts = Options(quick=args.quick, reaper=reaper)
    results = []
    with redis_for_bench() as redis_url:
        for name in args.drills or list(DRILLS):
            results.append(await run_one(name, opts, redis_url))
    return results


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.drills", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("drills", nargs="*", metavar="drill", help=", ".join(DRILLS))
    parser.add_argument("--quick", action="store_true", help="smaller and shorter (< 3 min)")
    args = parser.parse_args()
    for name in args.drills:
        if name not in DRILLS:
            parser.error(f"unknown drill {name!r}; choose from {', '.join(DRILLS)}")
    return args


def main() -> int:
    args = parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="queue-service-drills-"))
    reaper = Reaper(log_dir)
    atexit.register(reaper.end_all)
    command = shlex.join(["python", "-m", "scripts.drills", *sys.argv[1:]])
    started = time.monotonic()
    try:
        results = asyncio.run(run(args, reaper))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: every process started was ended", file=sys.stderr)
        return 130
    finally:
        reaper.end_all()
    print(f"\n{command}: {time.monotonic() - started:.0f}s; process logs in {log_dir}")
    print("\n".join([*HEADER, *(row(result) for result in results)]))
    write_markdown(command, results, log_dir)
    lost = sum(result.lost for result in results)
    if lost:
        print(f"{lost} accepted jobs LOST", file=sys.stderr)
    return 0 if all(result.passed for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
