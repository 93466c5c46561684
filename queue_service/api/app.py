"""`create_app(settings)`: the front end, with its Redis pool on `app.state` from the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from queue_service.api.auth import Authenticator
from queue_service.api.responses import error
from queue_service.api.routes import ROUTES
from queue_service.api.state import AppState
from queue_service.api.system_routes import SYSTEM_ROUTES
from queue_service.credentials import CredentialBox
from queue_service.errors import QueueServiceError
from queue_service.models import PutContext
from queue_service.outbound import CallbackPolicy
from queue_service.settings import Settings
from queue_service.store.broker import Broker
from queue_service.store.hub import PubSubHub
from queue_service.store.ids import TaskIdFactory
from queue_service.store.keys import Keys
from workers.adapters import ADAPTERS

log = logging.getLogger("queue_service.api.app")


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, QueueServiceError)
    return error(exc.status_code, exc.message, headers=exc.headers())


async def _redis_down(request: Request, exc: Exception) -> Response:
    log.warning("redis unavailable: %s", exc)
    return error(503, "the queue store (Redis) is unreachable; retry shortly")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, exc.detail, headers=dict(exc.headers or {}))


async def _instance_number(settings: Settings, redis: Redis, keys: Keys) -> int:
    """This process's number in task ids: configured, or handed out by Redis."""
    if settings.instance is not None:
        return settings.instance
    return int(await redis.incr(keys.instance_seq)) % 10_000


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        keys = Keys(settings.key_prefix)
        redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5)
        auth = Authenticator(settings.api_key_tenants, settings.api_keys_file)
        if not auth.enabled:
            log.warning("QUEUE_API_KEYS is not set: the API accepts requests without a key")
        hub = PubSubHub(redis, keys.hub_channel)
        try:
            instance = await _instance_number(settings, redis, keys)
            await hub.start()
            app.state.queue = AppState(
                settings=settings,
                redis=redis,
                broker=Broker(redis, keys, settings.result_retention, settings.max_waiting),
                hub=hub,
                ids=TaskIdFactory(instance),
                auth=auth,
                put_context=PutContext(
                    endpoints=frozenset(ADAPTERS),
                    max_timeout=settings.max_timeout,
                    max_depth=settings.max_json_depth,
                ),
                callback_policy=CallbackPolicy(settings.allowed_callback_networks),
                credentials=(
                    CredentialBox(settings.secret_key)
                    if settings.upstream_auth == "passthrough" and settings.secret_key
                    else None
                ),
            )
            log.info("api instance %04d ready, redis %s", instance, settings.redis_url)
            yield
        finally:
            await hub.stop()
            await redis.aclose()

    return Starlette(
        routes=[*ROUTES, *SYSTEM_ROUTES],
        lifespan=lifespan,
        exception_handlers={
            QueueServiceError: _service_error,
            RedisConnectionError: _redis_down,
            RedisTimeoutError: _redis_down,
            HTTPException: _http_error,
        },
    )
