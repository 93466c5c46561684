"""A worker process's resources and background tasks, started and stopped by arq's hooks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid

import httpx
from arq.connections import ArqRedis

from queue_service.credentials import CredentialBox
from queue_service.outbound import CallbackPolicy
from queue_service.settings import Settings
from queue_service.store import STORE_ERRORS, Store, Topic

from .adapters import Upstream
from .budget_gate import BudgetGate
from .callbacks import CallbackSender
from .consumer import StreamConsumer
from .executor import JobExecutor
from .follower import TaskFollower, TaskFollowPolicy
from .http_transport import WorkerTransport
from .limiter import Limiter
from .outcomes import OutcomeRecorder
from .ready_repair import repair_ready_lanes
from .routing import JobRoutes, RoutingTable
from .upstream_call import RetryPolicy, SizeLimits, UpstreamCaller
from .usage_counter import UsageCounter

log = logging.getLogger("workers.runtime")


class WorkerRuntime:
    def __init__(self, settings: Settings, queues: frozenset[str] | None, arq: ArqRedis) -> None:
        self.settings = settings
        self.queues = queues
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.store = store = Store.from_settings(settings)
        slots = settings.concurrency
        limits = httpx.Limits(max_connections=slots * 2, max_keepalive_connections=slots)
        self.upstream_http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.upstream_timeout, connect=10.0),
            transport=WorkerTransport(limits=limits),
        )
        self.callback_http = httpx.AsyncClient(
            timeout=settings.callback_request_timeout,
            follow_redirects=False,
            transport=WorkerTransport(),
        )
        self.callbacks = CallbackSender(
            self.callback_http,
            store,
            arq,
            arq_queue=store.keys.arq_queue,
            max_attempts=settings.callback_max_attempts,
            backoff=settings.callback_backoff,
            backoff_max=settings.callback_backoff_max,
            horizon=settings.callback_retry_horizon,
            dead_letter_retention=settings.dead_letter_retention,
            policy=CallbackPolicy(settings.allowed_callback_networks),
            secret=settings.callback_secret,
        )
        self.routing = RoutingTable.load(
            settings.upstreams_file, Upstream(settings.upstream_url, settings.upstream_api_key)
        )
        self.limiter = Limiter(store.leases, settings.limit_lease_ttl)
        policy = RetryPolicy(
            settings.upstream_max_retries,
            settings.upstream_retry_backoff,
            settings.upstream_retry_backoff_max,
        )
        routes = JobRoutes(
            self.routing,
            store.tasks,
            CredentialBox(settings.secret_key)
            if settings.upstream_auth == "passthrough" and settings.secret_key
            else None,
        )
        self.gate = BudgetGate(store.budgets)
        self.usage = UsageCounter(store.usage)
        self.outcomes = OutcomeRecorder(store.tasks, self.callbacks, self.usage, self.routing)
        self.follower = TaskFollower(
            store,
            self.upstream_http,
            routes,
            self.limiter,
            self.outcomes,
            self.name,
            TaskFollowPolicy(
                settings.task_poll_interval,
                settings.task_poll_max_interval,
                settings.task_poll_batch,
            ),
        )
        self.executor = JobExecutor(
            store,
            UpstreamCaller(
                self.upstream_http,
                store.tasks,
                policy,
                SizeLimits(
                    settings.max_stream_events,
                    settings.max_stream_bytes,
                    settings.max_result_bytes,
                ),
                self.gate,
            ),
            routes,
            self.limiter,
            self.outcomes,
            self.follower,
            self.name,
            settings.max_deliveries,
        )
        self.reader = store.stream_reader(self.name, settings.visibility_timeout)
        self.consumer = StreamConsumer(
            store,
            self.reader,
            self.executor.run,
            concurrency=slots,
            reserved_online=min(settings.online_reserved_slots, slots - 1),
            queues=queues,
            idle_wait=settings.registry_refresh_interval,
            reclaim_interval=settings.visibility_timeout / 2,
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.store.instance.claim()  # scheduled jobs get task ids here
        await self.store.scheduler.set_weights("q", self.routing.queue_weights)
        self._consuming = asyncio.create_task(self.consumer.run(), name="stream consumer")
        self._following = asyncio.create_task(self.follower.run(), name="upstream task follower")
        self._tasks = [
            asyncio.create_task(self.store.instance.keep(), name="instance lease"),
            self._consuming,
            asyncio.create_task(self._listen(), name="announcement listener"),
            asyncio.create_task(self._keep_alive(), name="in-flight keep-alive"),
            asyncio.create_task(self.consumer.reclaim_forever(), name="take-over of entries"),
            asyncio.create_task(self._repair_ready_lanes(), name="ready-lane repair"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self.usage.run(), name="usage writer"),
            self._following,
        ]
        log.info(
            "worker %s consuming with %d slots (%d reserved for online)",
            self.name,
            self.consumer.concurrency,
            self.consumer.concurrency - self.consumer.offline_limit,
        )

    async def stop(self, grace: float) -> None:
        """Stop taking jobs, give those in flight `grace` seconds, then close everything."""
        self.consumer.stop()
        consuming = self._consuming
        try:
            async with asyncio.timeout(5):  # its read is interrupted: it ends at once
                await asyncio.shield(consuming)
        except TimeoutError:
            consuming.cancel()
        with contextlib.suppress(Exception):  # else another worker takes them over later
            await self.consumer.hand_back()
        await self.consumer.drain(grace)
        # The follower stops before outcomes settle (it would start more of them), and the
        # tasks it had claimed come due at once for the other workers' followers.
        self._following.cancel()
        await asyncio.gather(self._following, return_exceptions=True)
        with contextlib.suppress(Exception):  # else their claims run out by themselves
            await self.follower.release()
        await self.follower.settle()
        await self.outcomes.settle()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.store.heartbeats.forget(self.name)
        with contextlib.suppress(Exception):  # the counts of the jobs it finished
            await self.usage.flush()
        await self.upstream_http.aclose()
        await self.callback_http.aclose()
        await self.reader.aclose()
        await self.store.aclose()

    async def _repair_ready_lanes(self) -> None:
        """Once at start (the cron does it every minute): jobs in lanes a crash left unmarked."""
        try:
            await repair_ready_lanes(self.store)
        except STORE_ERRORS as exc:
            log.warning("could not look for unmarked lanes at start (%s)", exc)

    async def _heartbeat(self) -> None:
        """Say who this worker is and how busy, for `queue-service workers`, stats, metrics."""
        while True:
            beat = {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "queues": sorted(self.queues) if self.queues is not None else None,
                "slots": self.consumer.concurrency,
                "in_flight": self.consumer.in_flight,
                "jobs_done": self.consumer.jobs_done,
            }
            try:
                await self.store.heartbeats.beat(self.name, beat)
                if self.queues is not None:  # kept, should Redis have lost it
                    await self.store.scheduler.serve_only(self.queues)
            except Exception:
                log.warning("heartbeat failed", exc_info=True)
            await asyncio.sleep(self.settings.heartbeat_interval)

    async def _keep_alive(self) -> None:
        """Touch in-flight entries well within the visibility timeout (see store/streams.py)."""
        while True:
            await asyncio.sleep(self.settings.visibility_timeout / 3)
            try:
                await self.consumer.keep_alive()
            except Exception:
                log.warning("could not touch in-flight entries", exc_info=True)

    async def _listen(self) -> None:
        """Follow announcements: cancelled tasks (stop them here), queues, freed slots."""
        while True:
            try:
                async with self.store.announcements.subscribed() as announcements:
                    self.consumer.queues_changed()  # whatever was missed while unsubscribed
                    async for announcement in announcements:
                        if announcement.topic is Topic.TASK_CANCELLED:
                            self.consumer.cancel(announcement.subject)
                        elif announcement.topic is Topic.QUEUES_CHANGED:
                            self.consumer.queues_changed()
                        elif announcement.topic is Topic.ROUTE_COOLING:
                            self.gate.route_cooling(announcement.subject)
                        else:
                            self.limiter.released(announcement.subject)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("announcement listener lost Redis; resubscribing in 1s", exc_info=True)
                await asyncio.sleep(1.0)  # a stop cancels it here too: never swallowed
