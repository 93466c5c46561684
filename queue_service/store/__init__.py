"""The store: the only code that speaks Redis. The API and the workers sit on top of it.

`Store` holds one process's Redis connection and the data model, one concept per part:

- `queues`     the queue registry (ids, lanes and their group, tenants, pause)
- `scheduler`  which lane (a queue's stream of one tenant at one level) a worker reads next
- `tasks`      the task lifecycle: prepare/submit, start, finish, cancel, requeue
- `following`  tasks followed upstream (Midjourney, Suno): handed over, claimed, updated
- `callbacks`  the callback ledger: callbacks due, dead letters
- `instance`   this process's instance number (a lease) for task ids
- `heartbeats` live workers
- `statistics` per-queue counts and stream figures
- `usage`      requests and tokens per tenant, queue, model and route (hourly, and all-time)
- `leases`     slots of shared concurrency limits; `buckets` the API keys' rate limits
- `budgets`    requests and tokens per minute of routes and tenants; routes' cooldowns
- `files`      batch input and output files, stored in pieces; `batches` OpenAI-style batches
- `announcements` workers' pub/sub; `hub()` the API's pub/sub hub for waiting requests
- `stream_reader()` a worker's reads of the lanes it picked, and its waits for work

Every key is built in `keys.py`; every script lives in `lua/` with a typed wrapper.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from queue_service.settings import Settings

from .announcements import Announcement, Announcements, Topic
from .batches import Batches
from .buckets import TokenBuckets
from .budgets import Budget, Budgets
from .files import FileRecord, Files
from .following import Following
from .heartbeats import Heartbeats
from .hub import PubSubHub
from .ids import TaskId, TaskIdFactory
from .instances import InstanceLease
from .keys import Keys
from .leases import Leases
from .ledger import CallbackLedger
from .lua import LuaScripts
from .queues import QueueRegistry
from .records import Outcome, TaskRecord
from .scheduler import Lane, Pick, Scheduler
from .statistics import Statistics
from .streams import StreamEntry, StreamReader
from .tasks import CancelResult, Submission, Tasks
from .usage import UsageLedger

UNREACHABLE_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)
"""What the store raises while Redis cannot be reached (the API answers 503)."""
STORE_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError)
"""Any failure of a store operation, for loops that log and try again."""

CONNECT_TIMEOUT = 5


class Store:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        redis_url: str,
        retention_s: int,
        max_waiting: int = 0,
        max_queues: int = 0,
        heartbeat_interval: float = 2.0,
        file_retention_s: int = 30 * 24 * 3600,
        usage_retention_s: int = 35 * 24 * 3600,
    ) -> None:
        self._redis = redis
        self._redis_url = redis_url
        self.keys = keys
        self.ids = TaskIdFactory(0)
        lua = LuaScripts(redis)
        self.instance = InstanceLease(keys, lua, self.ids)
        self.scheduler = Scheduler(redis, keys, lua)
        self.queues = QueueRegistry(redis, keys, lua, self.scheduler, max_queues)
        self.tasks = Tasks(
            redis, keys, lua, self.queues, self.ids, self.scheduler, retention_s, max_waiting
        )
        self.following = Following(redis, keys, lua)
        self.heartbeats = Heartbeats(redis, keys, heartbeat_interval)
        self.statistics = Statistics(redis, keys, self.queues, self.heartbeats)
        self.callbacks = CallbackLedger(redis, keys, lua)
        self.leases = Leases(redis, keys, lua)
        self.buckets = TokenBuckets(keys, lua)
        self.budgets = Budgets(redis, keys, lua)
        self.announcements = Announcements(redis, keys)
        self.files = Files(redis, keys, file_retention_s)
        self.batches = Batches(redis, keys, lua, self.tasks, file_retention_s)
        self.usage = UsageLedger(redis, keys, usage_retention_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(
            Redis.from_url(settings.redis_url, socket_connect_timeout=CONNECT_TIMEOUT),
            Keys(settings.key_prefix),
            redis_url=settings.redis_url,
            retention_s=settings.result_retention,
            max_waiting=settings.max_waiting,
            max_queues=settings.max_queues,
            heartbeat_interval=settings.heartbeat_interval,
            file_retention_s=settings.file_retention,
            usage_retention_s=settings.usage_retention,
        )

    async def ping(self) -> None:
        await self._redis.ping()

    def hub(self) -> PubSubHub:
        """A pub/sub hub (one connection) for this process's waiting requests."""
        return PubSubHub(self._redis, self.keys.hub_channel)

    def stream_reader(self, consumer: str, visibility_timeout: float) -> StreamReader:
        """A worker's reader of the level streams, with its own connection for blocking."""
        blocking = Redis.from_url(self._redis_url, single_connection_client=True)
        return StreamReader(self._redis, blocking, self.keys, consumer, visibility_timeout)

    async def aclose(self) -> None:
        await self._redis.aclose()


__all__ = [
    "STORE_ERRORS",
    "UNREACHABLE_ERRORS",
    "Announcement",
    "Budget",
    "CancelResult",
    "FileRecord",
    "Keys",
    "Lane",
    "Outcome",
    "Pick",
    "PubSubHub",
    "Store",
    "StreamEntry",
    "StreamReader",
    "Submission",
    "TaskId",
    "TaskIdFactory",
    "TaskRecord",
    "Topic",
]
