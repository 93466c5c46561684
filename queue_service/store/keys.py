"""Every Redis key and channel name the service uses, built in one place.

A queue's keys share the hash tag `{<queue>}` so that they live in one Redis Cluster slot
and one Lua script may touch them all; the scheduler's keys share `{sched}` and the budgets'
`{budget}`, so each of their scripts stays in one slot too. The queue registry and a few
more are global; `remove_queue.lua`, which edits the registry, still spans slots.

A queue has one stream per level and tenant (a *lane*): the scheduler shares the workers
between tenants, so one tenant's backlog never sits in front of another's jobs. A lane's
tenant appears in its key as `tenant_id(tenant)` (the no-auth tenant's lane keeps the plain
`<queue>:<level>` key).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

CONSUMER_GROUP = "workers"


@functools.lru_cache(maxsize=4096)
def tenant_id(tenant: str) -> str:
    """A tenant's name as lanes and the scheduler know it: short, safe in keys ("" stays "")."""
    return _digest(tenant) if tenant else ""


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "qs"

    # -- global -------------------------------------------------------------------
    @property
    def queue_ids(self) -> str:
        """Hash: queue name -> queue id."""
        return f"{self.prefix}:queues"

    @property
    def queue_names(self) -> str:
        """Hash: queue id -> queue name."""
        return f"{self.prefix}:queue-names"

    @property
    def queue_seq(self) -> str:
        return f"{self.prefix}:queue-seq"

    def instance_lease(self, number: int) -> str:
        """String: the token of the process holding instance number `number` (expiring)."""
        return f"{self.prefix}:instance:{number}"

    def rate_bucket(self, key_id: str) -> str:
        """Hash: one API key's token bucket (its id is a digest, never the key)."""
        return f"{self.prefix}:rate:{key_id}"

    @property
    def workers(self) -> str:
        """Hash: worker name -> its latest heartbeat (JSON: host, pid, queues, slots, ...)."""
        return f"{self.prefix}:workers"

    @property
    def paused(self) -> str:
        """Set: names of paused queues (puts accepted, workers take none of their jobs)."""
        return f"{self.prefix}:{{sched}}:paused"

    @property
    def cancel_channel(self) -> str:
        """Pub/sub channel on which cancelled task ids are announced to workers."""
        return f"{self.prefix}:cancel"

    @property
    def hub_channel(self) -> str:
        """The channel an API's pub/sub hub always listens on (keeps its reader blocking)."""
        return f"{self.prefix}:hub"

    @property
    def new_queue_channel(self) -> str:
        """Pub/sub channel on which newly registered queue names are announced to workers."""
        return f"{self.prefix}:new-queue"

    @property
    def arq_queue(self) -> str:
        """arq's own queue: callback retries and cron, never the hot path."""
        return f"{self.prefix}:arq:queue"

    def callback_job_id(self, task_id: str, attempt: int | str) -> str:
        """arq job id of a callback delivery (arq's own keys are global: keep ours apart)."""
        return f"{self.prefix}:callback:{task_id}:{attempt}"

    @property
    def arq_health_check(self) -> str:
        return f"{self.prefix}:arq:health-check"

    # -- concurrency limits (leases.py) ------------------------------------------------
    def limit_leases(self, limit: str) -> str:
        """Sorted set: lease id -> expiry (ms). A dead worker's leases simply expire."""
        return f"{self.prefix}:{{limit:{limit}}}:leases"

    def limit_waiters(self, limit: str) -> str:
        """Sorted set: lease id -> priority (level, then age): who gets the next free slot."""
        return f"{self.prefix}:{{limit:{limit}}}:waiters"

    def limit_waiter_expiry(self, limit: str) -> str:
        """Sorted set: lease id -> when its waiter counts as gone (ms)."""
        return f"{self.prefix}:{{limit:{limit}}}:waiter-expiry"

    @property
    def limit_released_channel(self) -> str:
        """Pub/sub channel announcing freed slots (payload: the limit's name)."""
        return f"{self.prefix}:limit-released"

    # -- the scheduler (scheduler.py): one hash tag, so its scripts stay in one slot -----
    def ready_tenants(self, level: int) -> str:
        """Sorted set: ids of the tenants with lanes that may hold work at `level` -> pass
        (the virtual time of their share: the lowest is served next)."""
        return f"{self.prefix}:{{sched}}:{level}:tenants"

    def ready_queues_prefix(self, level: int) -> str:
        """Prefix of the sorted sets (one per tenant id) of a tenant's queues that may hold
        work at `level` -> pass within the tenant's share."""
        return f"{self.prefix}:{{sched}}:{level}:queues:"

    def ready_queues(self, level: int, tenant: str) -> str:
        return self.ready_queues_prefix(level) + tenant

    def lane_marks(self, level: int) -> str:
        """Hash: `<tenant id>|<queue>` -> how many times the lane was marked ready (never
        reset: a lane is dropped from the ready sets only if no mark came since its read)."""
        return f"{self.prefix}:{{sched}}:{level}:marks"

    def passes(self, level: int) -> str:
        """Hash: `vt` the level's virtual time; `t:<tenant id>` a tenant's last pass;
        `vt:<tenant id>` its queues' virtual time; `q:<tenant id>|<queue>` a queue's pass."""
        return f"{self.prefix}:{{sched}}:{level}:passes"

    def wake(self, level: int, queue: str | None = None) -> str:
        """List: tokens pushed when work is put at `level` (on `queue`: only for the queues
        in `filtered_queues`); idle workers block on it."""
        if queue is None:
            return f"{self.prefix}:{{sched}}:{level}:wake"
        return f"{self.prefix}:{{sched}}:{level}:wake:{queue}"

    @property
    def parked_lanes(self) -> str:
        """Sorted set: `<level>|<tenant id>|<queue>` of lanes whose next job waits for budget
        -> until when (ms); picks pass them over until then."""
        return f"{self.prefix}:{{sched}}:parked"

    @property
    def filtered_queues(self) -> str:
        """Set: queues that workers serving only some queues (`--queues`) serve: their puts
        also wake those workers' own lists."""
        return f"{self.prefix}:{{sched}}:filtered"

    @property
    def weights(self) -> str:
        """Hash: `t:<tenant id>` a tenant's weight (keys file), `q:<queue>` a queue's
        (routing file); 1 when absent."""
        return f"{self.prefix}:{{sched}}:weights"

    @property
    def active_lanes(self) -> str:
        """Sorted set: `<level>|<tenant id>|<queue>` of lanes read from -> when (ms); where
        workers look for entries of silent workers to take over."""
        return f"{self.prefix}:{{sched}}:active"

    # -- budgets (budgets.py): one hash tag, so a job's buckets are taken in one script ---
    def budget_bucket(self, owner: str, kind: str) -> str:
        """Hash: a requests- or tokens-per-minute bucket (`tokens`, `at`) of a route
        (`route:<name>`) or a tenant (`tenant:<id>`)."""
        return f"{self.prefix}:{{budget}}:{owner}:{kind}"

    def cooldown(self, route: str) -> str:
        """String (expiring): set while a route's upstream asked for a pause (429, 503)."""
        return f"{self.prefix}:{{budget}}:cooldown:{route}"

    @property
    def cooldown_channel(self) -> str:
        """Pub/sub channel announcing a route's cooldown to workers (`<route>|<until ms>`)."""
        return f"{self.prefix}:cooldowns"

    @property
    def tenant_budgets(self) -> str:
        """Hash: tenant id -> `{"rpm", "tpm"}` (JSON), from the keys file."""
        return f"{self.prefix}:{{budget}}:tenants"

    # -- per queue ----------------------------------------------------------------
    def stream(self, queue: str, level: int, tenant: str = "") -> str:
        """A lane: the level stream of one tenant (`tenant_id`) on the queue."""
        if tenant:
            return f"{self.prefix}:{{{queue}}}:{level}:{tenant}"
        return f"{self.prefix}:{{{queue}}}:{level}"

    # -- files (files.py): a file's keys share the hash tag {file:<id>} ------------------
    def file_meta(self, file_id: str) -> str:
        """Hash: a file's tenant, filename, purpose, bytes, created_at, expires_at."""
        return f"{self.prefix}:{{file:{file_id}}}:meta"

    def file_chunks(self, file_id: str) -> str:
        """List: a file's content, in pieces of up to `files.CHUNK_BYTES`, in order."""
        return f"{self.prefix}:{{file:{file_id}}}:chunks"

    def tenant_files(self, tenant: str) -> str:
        """Sorted set: a tenant's file ids -> created_at (ms), for listing."""
        return f"{self.prefix}:files:{_digest(tenant)}"

    # -- batches (batches.py): a batch's keys share the hash tag {batch:<id>} ------------
    def batch(self, batch_id: str) -> str:
        """Hash: a batch's fields (status, timestamps, endpoint, queue, files, metadata...)."""
        return f"{self.prefix}:{{batch:{batch_id}}}:meta"

    def batch_lines(self, batch_id: str) -> str:
        """List: one JSON `[custom_id, task id]` per submitted line, in the file's order."""
        return f"{self.prefix}:{{batch:{batch_id}}}:lines"

    def batch_submitter(self, batch_id: str) -> str:
        """String (expiring): the token of the process putting the batch's lines."""
        return f"{self.prefix}:{{batch:{batch_id}}}:submitter"

    @property
    def open_batches(self) -> str:
        """Sorted set: ids of batches not ended yet -> created (ms), for the worker's sweep."""
        return f"{self.prefix}:batches:open"

    @property
    def batch_webhooks_due(self) -> str:
        """Sorted set: ids of ended batches whose webhook is owed -> next attempt (ms)."""
        return f"{self.prefix}:batches:webhooks-due"

    def tenant_batches(self, tenant: str) -> str:
        """Sorted set: a tenant's batch ids -> created_at (ms), for listing."""
        return f"{self.prefix}:batches:{_digest(tenant)}"

    def queue_meta(self, queue: str) -> str:
        """Hash: the queue's `id` as registered, `expires_at` (ms) when its last record does.

        It lives in the queue's slot, so every put can check the id it was given against it:
        a missing or different one means the registry was lost or changed (see `put.lua`)."""
        return f"{self.prefix}:{{{queue}}}:meta"

    def idempotency(self, queue: str, digest: str) -> str:
        """String: `<fingerprint> <task id>` of the put made with one tenant's idempotency
        key on this queue (`digest` of tenant and key); expires with that task."""
        return f"{self.prefix}:{{{queue}}}:idempotency:{digest}"

    def task(self, queue: str, task_id: str) -> str:
        return f"{self.prefix}:{{{queue}}}:task:{task_id}"

    def callbacks_due(self, queue: str) -> str:
        """Sorted set: task id -> when its callback must have been settled (ms)."""
        return f"{self.prefix}:{{{queue}}}:callbacks-due"

    def followed(self, queue: str) -> str:
        """Sorted set: ids of tasks followed upstream (Midjourney, Suno) -> next look (ms)."""
        return f"{self.prefix}:{{{queue}}}:followed"

    @property
    def followed_queues(self) -> str:
        """Set: names of the queues whose tasks have been followed upstream (where followers
        look; a queue leaves it when it is removed)."""
        return f"{self.prefix}:followed-queues"

    @property
    def dead_letters(self) -> str:
        """Sorted set: `queue/task id` of callbacks given up on -> when (ms)."""
        return f"{self.prefix}:dead-letters"

    # -- usage accounting (usage.py) -------------------------------------------------------
    def usage_hour(self, tenant: str, hour: int) -> str:
        """Hash: a tenant's usage in one hour (`hour`: epoch seconds // 3600), field
        `[queue, model, route, kind]` (JSON) -> count; expires after the usage retention."""
        return f"{self.prefix}:usage:{_digest(tenant)}:{hour}"

    @property
    def usage_tenants(self) -> str:
        """Set: the tenants with usage kept (whose hours an admin's read looks at)."""
        return f"{self.prefix}:usage:tenants"

    @property
    def usage_totals(self) -> str:
        """Hash: all-time usage, field `[tenant, queue, model, route, kind]` (JSON) -> count."""
        return f"{self.prefix}:usage:totals"

    def queue_stats(self, queue: str) -> str:
        """Hash: statistic (`name|label=value|...`) -> count or sum (see statistics.py)."""
        return f"{self.prefix}:{{{queue}}}:stats"

    def queue_tenants(self, queue: str) -> str:
        """Set: the tenants that have put jobs on the queue (whose stats they may read)."""
        return f"{self.prefix}:{{{queue}}}:tenants"

    def task_channel(self, queue: str, task_id: str) -> str:
        """Pub/sub channel carrying a task's events (stream chunks, completion)."""
        return f"{self.prefix}:{{{queue}}}:events:{task_id}"


def _digest(tenant: str) -> str:
    """A tenant's name as it appears in key names (any text, kept short and safe)."""
    return hashlib.sha256(tenant.encode()).hexdigest()[:16]
