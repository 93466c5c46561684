"""A worker process's resources and background tasks, started and stopped by arq's hooks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid

import httpx
import orjson
from arq.connections import ArqRedis
from redis.asyncio import Redis

from queue_service.credentials import CredentialBox
from queue_service.outbound import CallbackPolicy
from queue_service.settings import Settings
from queue_service.store.broker import Broker
from queue_service.store.ids import TaskIdFactory
from queue_service.store.keys import Keys

from .adapters import Upstream
from .callbacks import CallbackSender
from .consumer import StreamConsumer
from .executor import JobExecutor
from .limiter import Limiter
from .recovery import PendingKeeper
from .routing import RoutingTable
from .upstream_call import RetryPolicy, SizeLimits, UpstreamCaller

log = logging.getLogger("workers.runtime")

class WorkerRuntime:
    def __init__(self, settings: Settings, queues: frozenset[str] | None, arq: ArqRedis) -> None:
        self.settings = settings
        self.queues = queues
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        keys = Keys(settings.key_prefix)
        self.keys = keys
        self.redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5)
        self.blocking_redis = Redis.from_url(settings.redis_url, single_connection_client=True)
        self.broker = Broker(self.redis, keys, settings.result_retention)
        slots = settings.concurrency
        self.upstream_http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.upstream_timeout, connect=10.0),
            limits=httpx.Limits(max_connections=slots * 2, max_keepalive_connections=slots),
        )
        self.callback_http = httpx.AsyncClient(
            timeout=settings.callback_request_timeout, follow_redirects=False
        )
        self.callbacks = CallbackSender(
            self.callback_http,
            self.broker,
            arq,
            arq_queue=keys.arq_queue,
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
        self.limiter = Limiter(self.redis, keys, settings.limit_lease_ttl)
        policy = RetryPolicy(
            settings.upstream_max_retries,
            settings.upstream_retry_backoff,
            settings.upstream_retry_backoff_max,
        )
        self.executor = JobExecutor(
            self.broker,
            UpstreamCaller(
                self.upstream_http,
                self.broker,
                policy,
                SizeLimits(
                    settings.max_stream_events,
                    settings.max_stream_bytes,
                    settings.max_result_bytes,
                ),
            ),
            self.routing,
            self.limiter,
            self.callbacks,
            self.name,
            settings.max_deliveries,
            CredentialBox(settings.secret_key)
            if settings.upstream_auth == "passthrough" and settings.secret_key
            else None,
        )
        self.consumer = StreamConsumer(
            self.broker,
            self.blocking_redis,
            self.executor.run,
            name=self.name,
            concurrency=slots,
            reserved_online=min(settings.online_reserved_slots, slots - 1),
            queues=queues,
            refresh_interval=settings.registry_refresh_interval,
            keeper=PendingKeeper(self.redis, self.name, settings.visibility_timeout),
            reclaim_interval=settings.visibility_timeout / 2,
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        instance = int(await self.redis.incr(self.keys.instance_seq))
        self.scheduler_ids = TaskIdFactory(instance)
        self._tasks = [
            asyncio.create_task(self.consumer.run(), name="stream consumer"),
            asyncio.create_task(self._listen(), name="announcement listener"),
            asyncio.create_task(self._keep_alive(), name="in-flight keep-alive"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
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
        consuming = self._tasks[0]
        try:
            async with asyncio.timeout(5):  # its read is interrupted: it ends at once
                await asyncio.shield(consuming)
        except TimeoutError:
            consuming.cancel()
        await self.consumer.drain(grace)
        await self.executor.settle()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.redis.hdel(self.keys.workers, self.name)
        await self.upstream_http.aclose()
        await self.callback_http.aclose()
        await self.blocking_redis.aclose()
        await self.redis.aclose()

    async def _heartbeat(self) -> None:
        """Say who this worker is and how busy, for `queue-service workers`, stats, metrics."""
        while True:
            beat = {
                "name": self.name,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "queues": sorted(self.queues) if self.queues is not None else None,
                "slots": self.consumer.concurrency,
                "in_flight": self.consumer.in_flight,
                "jobs_done": self.consumer.jobs_done,
                "seen_at": time.time(),
            }
            try:
                await self.redis.hset(self.keys.workers, self.name, orjson.dumps(beat))
            except Exception:
                log.warning("heartbeat failed", exc_info=True)
            await asyncio.sleep(self.settings.heartbeat_interval)

    async def _keep_alive(self) -> None:
        """Touch in-flight entries well within the visibility timeout (see recovery.py)."""
        while True:
            await asyncio.sleep(self.settings.visibility_timeout / 3)
            try:
                await self.consumer.keep_alive()
            except Exception:
                log.warning("could not touch in-flight entries", exc_info=True)

    async def _listen(self) -> None:
        """Follow announcements: cancelled tasks (stop them here), new queues, freed slots."""
        keys = self.keys
        cancel, new_queue = keys.cancel_channel, keys.new_queue_channel
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(cancel, new_queue, keys.limit_released_channel)
                    self.consumer.queue_added()  # whatever was missed while unsubscribed
                    async for message in pubsub.listen():
                        channel, data = message["channel"].decode(), message["data"].decode()
                        if channel == cancel:
                            self._cancel_local(data)
                        elif channel == new_queue:
                            self.consumer.queue_added()
                        else:
                            self.limiter.released(data)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("cancel listener lost Redis; resubscribing in 1s", exc_info=True)
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(1.0)

    def _cancel_local(self, task_id: str) -> None:
        job = self.consumer.running_task(task_id)
        if job is not None:
            self.executor.cancelled.add(task_id)
            job.cancel()
