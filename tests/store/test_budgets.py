"""Budgets: requests and tokens per minute taken all or nothing, tokens lent into debt (a
big job is never starved), a reserve left to online jobs, estimates settled with usage, and a
route's cooldown honoured by every take."""

from __future__ import annotations

from redis.asyncio import Redis

from queue_service.store import Budget, Keys, Store
from queue_service.store.budgets import route_budget

ROUTE = route_budget("r", rpm=60, tpm=6000)
TENANT = Budget("tenant:t", rpm=None, tpm=1000)


async def test_a_take_comes_out_of_every_budget_until_one_runs_short(store: Store) -> None:
    budgets = [ROUTE, TENANT]
    assert await store.budgets.take("r", budgets, 400, online=True) == 0
    assert await store.budgets.take("r", budgets, 400, online=True) == 0
    assert await store.budgets.take("r", budgets, 400, online=True) == 0  # 200 left: lent
    wait = await store.budgets.take("r", budgets, 400, online=True)  # the tenant owes ~200
    assert 11_000 < wait <= 12_100  # back to a token at 1,000 a minute: about 12 s
    assert await store.budgets.take("r", [ROUTE], 400, online=True) == 0  # the route had room


async def test_a_job_bigger_than_the_budget_still_goes_once_it_is_full(store: Store) -> None:
    small = [Budget("tenant:big", rpm=1, tpm=1000)]
    assert await store.budgets.take("r", small, 5000, online=False) == 0  # never locked out
    wait = await store.budgets.take("r", small, 10, online=True)
    assert wait > 60_000  # the debt of 4,000 tokens (and the request) take minutes to refill


async def test_nothing_is_taken_when_one_budget_refuses(store: Store, redis: Redis) -> None:
    small = Budget("tenant:s", rpm=1)
    assert await store.budgets.take("r", [ROUTE, small], 10, online=True) == 0
    before = await redis.hget(Keys(store.keys.prefix).budget_bucket(ROUTE.owner, "rpm"), "tokens")
    assert await store.budgets.take("r", [ROUTE, small], 10, online=True) > 0
    after = await redis.hget(Keys(store.keys.prefix).budget_bucket(ROUTE.owner, "rpm"), "tokens")
    assert float(after) >= float(before)  # the route's request was not taken either


async def test_offline_jobs_leave_a_reserve_to_online_ones(store: Store) -> None:
    budget = [Budget("route:x", rpm=10)]
    for _ in range(9):
        assert await store.budgets.take("x", budget, 0, online=False) == 0
    assert await store.budgets.take("x", budget, 0, online=False) > 0  # the last tenth
    assert await store.budgets.take("x", budget, 0, online=True) == 0


async def test_settling_gives_back_what_the_estimate_took_beyond_the_use(store: Store) -> None:
    budgets = [TENANT]
    assert await store.budgets.take("r", budgets, 900, online=True) == 0
    assert await store.budgets.take("r", budgets, 500, online=True) == 0  # into a debt of 400
    assert await store.budgets.take("r", budgets, 1, online=True) > 0
    await store.budgets.settle(budgets, estimated=900, used=100)  # 800 back: 400 left
    assert await store.budgets.take("r", budgets, 1, online=True) == 0


async def test_usage_beyond_the_estimate_is_taken_too(store: Store) -> None:
    budgets = [TENANT]
    assert await store.budgets.take("r", budgets, 100, online=True) == 0
    await store.budgets.settle(budgets, estimated=100, used=1000)  # a debt of ~100
    assert await store.budgets.take("r", budgets, 1, online=True) > 0


async def test_a_cooldown_holds_every_take_of_its_route(store: Store) -> None:
    await store.budgets.cool_down("r", 5)
    assert 4_000 < await store.budgets.take("r", [], 0, online=True) <= 5_000
    assert await store.budgets.take("other", [], 0, online=True) == 0
    await store.budgets.cool_down("r", 1)  # a shorter pause leaves the longer one
    assert await store.budgets.take("r", [], 0, online=True) > 1_000


async def test_tenant_budgets_are_replaced_whole(store: Store) -> None:
    await store.budgets.set_tenant_budgets({"acme": (10, None), "zeta": (None, 500)})
    await store.budgets.set_tenant_budgets({"acme": (20, 2000)})
    (budget,) = (await store.budgets.tenant_budgets()).values()
    assert (budget.rpm, budget.tpm) == (20, 2000)
