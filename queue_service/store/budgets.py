"""Budgets shared by every worker: requests and tokens per minute of an upstream route and of
a tenant, and a route's cooldown after its upstream asked for a pause.

A job takes its request and its estimated tokens from every budget it falls under in one
step (`lua/budget_take.lua`), or learns how long to wait; once answered, its estimate is
settled against the answer's usage (`lua/budget_adjust.lua`). An upstream's 429 (or 503 with
`Retry-After`) sets the route's cooldown, which every worker's next take honours, instead of
each job retrying on a timer of its own.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import cast

import orjson
from redis.asyncio import Redis

from queue_service.timing import now_ms

from .keys import Keys, tenant_id
from .lua import LuaScripts

ONLINE_RESERVE = 0.1
"""The part of each bucket offline jobs leave to online ones."""


@dataclass(frozen=True, slots=True)
class Budget:
    """Per-minute allowances of one owner (`route:<name>` or `tenant:<id>`)."""

    owner: str
    rpm: int | None = None
    tpm: int | None = None

    @property
    def limited(self) -> bool:
        return bool(self.rpm or self.tpm)


def route_budget(route: str, rpm: int | None, tpm: int | None) -> Budget:
    return Budget(f"route:{route}", rpm, tpm)


class Budgets:
    def __init__(self, redis: Redis, keys: Keys, lua: LuaScripts) -> None:
        self._redis = redis
        self._keys = keys
        self._lua = lua

    async def take(self, route: str, budgets: list[Budget], tokens: int, online: bool) -> int:
        """Take a request and `tokens` from every budget: 0, or the ms to wait first.

        A request needs a whole one left (above the online reserve, for an offline job);
        tokens need only a positive level there, and may take it below zero."""
        reserve = 0.0 if online else ONLINE_RESERVE
        buckets: list[str] = []
        size_amount_need: list[float] = []
        for budget in budgets:
            if budget.rpm:
                need = min(1 + reserve * budget.rpm, budget.rpm)
                buckets.append(self._keys.budget_bucket(budget.owner, "rpm"))
                size_amount_need += [budget.rpm, 1, need]
            if budget.tpm:
                need = min(reserve * budget.tpm + 1, budget.tpm)
                buckets.append(self._keys.budget_bucket(budget.owner, "tpm"))
                size_amount_need += [budget.tpm, tokens, need]
        return await self._lua.budget_take(
            cooldown=self._keys.cooldown(route),
            buckets=buckets,
            now_ms=now_ms(),
            size_amount_need=size_amount_need,
        )

    async def settle(self, budgets: list[Budget], estimated: int, used: int) -> None:
        """Give back what the estimate took beyond the use (or take what it missed)."""
        for budget in budgets:
            if budget.tpm and used != estimated:
                bucket = self._keys.budget_bucket(budget.owner, "tpm")
                await self._lua.budget_adjust(
                    bucket=bucket, tokens=estimated - used, size=budget.tpm
                )

    async def refund(self, budgets: list[Budget], tokens: int) -> None:
        """Give back a take whose request never went out: its request and its tokens."""
        for budget in budgets:
            for kind, size, amount in (("rpm", budget.rpm, 1), ("tpm", budget.tpm, tokens)):
                if size and amount:
                    bucket = self._keys.budget_bucket(budget.owner, kind)
                    await self._lua.budget_adjust(bucket=bucket, tokens=amount, size=size)

    async def cool_down(self, route: str, seconds: float) -> int:
        """Pause the route for every worker for `seconds` (a longer pause set already stays),
        in one atomic step, and announce it; returns until when (ms)."""
        key = self._keys.cooldown(route)
        ms = max(math.ceil(seconds * 1000), 1)
        until = now_ms() + ms
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, 1, nx=True, px=ms)
            pipe.pexpire(key, ms, gt=True)
            pipe.publish(self._keys.cooldown_channel, f"{route}|{until}")
            await pipe.execute()
        return until

    async def set_tenant_budgets(self, budgets: dict[str, tuple[int | None, int | None]]) -> None:
        """Replace the tenants' budgets (by tenant name: rpm, tpm) from the keys file."""
        key = self._keys.tenant_budgets
        fields = {
            tenant_id(tenant): orjson.dumps({"rpm": rpm, "tpm": tpm})
            for tenant, (rpm, tpm) in budgets.items()
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if fields:
                pipe.hset(key, mapping=fields)
            await pipe.execute()

    async def tenant_budgets(self) -> dict[str, Budget]:
        """Every tenant's budget that the keys file sets, by tenant id."""
        raw = await cast(
            Awaitable[dict[bytes, bytes]], self._redis.hgetall(self._keys.tenant_budgets)
        )
        budgets = {}
        for tenant, value in raw.items():
            limits = orjson.loads(value)
            owner = f"tenant:{tenant.decode()}"
            budgets[tenant.decode()] = Budget(owner, limits.get("rpm"), limits.get("tpm"))
        return budgets
