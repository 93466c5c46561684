"""`create_app(settings)`: the front end, with its store and hub on `app.state` from the
lifespan. Every error becomes an HTTP answer here, in one place.

The API starts serving at once, Redis or not: until it reaches Redis (it keeps trying, one
log line per try) `/readyz` and every request that needs the store answer 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from queue_service.credentials import CredentialBox
from queue_service.endpoints import SERVED_ENDPOINTS
from queue_service.errors import ClientGone, QueueServiceError, ServiceUnavailable
from queue_service.models import PutContext
from queue_service.outbound import CallbackPolicy
from queue_service.settings import Settings
from queue_service.store import STORE_ERRORS, UNREACHABLE_ERRORS, Store
from queue_service.upstreams import load_routing_file

from .auth import Authenticator
from .batch_runner import BatchRunner
from .batches import ROUTES as BATCH_ROUTES
from .compat import ROUTES as COMPAT_ROUTES
from .dialects import error_response
from .files import ROUTES as FILE_ROUTES
from .message_batches import ROUTES as MESSAGE_BATCH_ROUTES
from .model_list import ModelList
from .routes import ROUTES
from .state import AppState
from .system_routes import SYSTEM_ROUTES
from .usage import ROUTES as USAGE_ROUTES

log = logging.getLogger("queue_service.api.app")

CONNECT_RETRY_S = 1.0
TERMS_REPUBLISH_S = 60.0
_NOT_REACHED: tuple[type[Exception], ...] = (*STORE_ERRORS, ServiceUnavailable)


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, QueueServiceError)
    if isinstance(exc, ClientGone):
        return Response(status_code=exc.status_code)  # nobody is there to read a body
    return error_response(request, exc.status_code, exc.message, exc.headers())


async def _store_unreachable(request: Request, exc: Exception) -> Response:
    log.warning("redis unavailable: %s", exc)
    return error_response(request, 503, "the queue store (Redis) is unreachable; retry shortly")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(request, exc.status_code, exc.detail, dict(exc.headers or {}))


async def _reach_redis(state: AppState, tries: int) -> bool:
    """Take this process's instance number and start the hub; False while Redis is away."""
    settings = state.settings
    try:
        instance = await state.store.instance.claim(settings.instance)
        await _publish_tenant_terms(state)
        await state.hub.start()
    except _NOT_REACHED as exc:
        log.warning(
            "redis at %s is not reachable (try %d: %s); trying again in %.0fs",
            settings.redis_location,
            tries,
            exc,
            CONNECT_RETRY_S,
        )
        return False
    state.ready = True
    log.info("api instance %04d ready, redis %s", instance, settings.redis_location)
    return True


async def _publish_tenant_terms(state: AppState) -> None:
    """The keys file's tenant weights and budgets, where every worker reads them."""
    tenants = state.auth.tenants
    weights = {name: terms.weight for name, terms in tenants.items() if terms.weight != 1}
    await state.store.scheduler.set_weights("t", weights)
    budgets = {name: (t.rpm, t.tpm) for name, t in tenants.items() if t.rpm or t.tpm}
    await state.store.budgets.set_tenant_budgets(budgets)


async def _keep_tenant_terms(state: AppState) -> None:
    """Publish them again every minute: Redis may have lost them (a flush, a failover)."""
    while True:
        await asyncio.sleep(TERMS_REPUBLISH_S)
        try:
            await _publish_tenant_terms(state)
        except Exception as exc:  # never ends the loop, nor the lease kept beside it
            log.warning("could not publish the tenants' weights and budgets (%s)", exc)


async def _stay_connected(state: AppState) -> None:
    """Wait for Redis as long as it takes (one log line per try), then keep the lease."""
    tries = 1
    while not state.ready:
        await asyncio.sleep(CONNECT_RETRY_S)
        tries += 1
        await _reach_redis(state, tries)
    async with asyncio.TaskGroup() as group:
        group.create_task(state.store.instance.keep())
        group.create_task(_keep_tenant_terms(state))


def _routed_models(settings: Settings) -> list[str]:
    if settings.upstreams_file is None:
        return []
    routes = load_routing_file(settings.upstreams_file).upstream
    return sorted({route.model for route in routes if route.model})


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = Store.from_settings(settings)
        auth = Authenticator(settings.api_key_tenants, settings.api_keys_file)
        if not auth.enabled:
            log.warning("QUEUE_API_KEYS is not set: the API accepts requests without a key")
        put_context = PutContext(
            endpoints=SERVED_ENDPOINTS,
            max_timeout=settings.max_timeout,
            max_depth=settings.max_json_depth,
        )
        state = AppState(
            settings=settings,
            store=store,
            hub=store.hub(),
            auth=auth,
            put_context=put_context,
            callback_policy=CallbackPolicy(settings.allowed_callback_networks),
            credentials=(
                CredentialBox(settings.secret_key)
                if settings.upstream_auth == "passthrough" and settings.secret_key
                else None
            ),
            models=ModelList(
                _routed_models(settings), settings.upstream_url, settings.upstream_api_key
            ),
            batch_runner=BatchRunner(store, put_context),
        )
        app.state.queue = state
        await _reach_redis(state, tries=1)  # serving starts either way
        connecting = asyncio.create_task(_stay_connected(state), name="redis connection")
        try:
            yield
        finally:
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
            await state.batch_runner.stop()
            await state.hub.stop()
            await store.aclose()

    return Starlette(
        routes=[
            *USAGE_ROUTES,  # before ROUTES, whose /v1/queue/{task_id} would take it
            *ROUTES,
            *COMPAT_ROUTES,
            *FILE_ROUTES,
            *BATCH_ROUTES,
            *MESSAGE_BATCH_ROUTES,
            *SYSTEM_ROUTES,
        ],
        lifespan=lifespan,
        exception_handlers={
            QueueServiceError: _service_error,
            HTTPException: _http_error,
            **dict.fromkeys(UNREACHABLE_ERRORS, _store_unreachable),
        },
    )
