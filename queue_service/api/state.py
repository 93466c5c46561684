"""What the API keeps for its lifetime, on `app.state.queue` (built in the lifespan)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from starlette.requests import Request

from queue_service.credentials import CredentialBox
from queue_service.errors import ServiceUnavailable, TooManyRequests
from queue_service.models import PutContext, ResponseMode
from queue_service.outbound import CallbackPolicy
from queue_service.settings import Settings
from queue_service.store import PubSubHub, Store

from .auth import Authenticator, Principal, caller_upstream_key
from .batch_runner import BatchRunner
from .model_list import ModelList


@dataclass
class AppState:
    settings: Settings
    store: Store
    hub: PubSubHub
    auth: Authenticator
    put_context: PutContext
    callback_policy: CallbackPolicy
    credentials: CredentialBox | None
    """Set when callers' own keys go upstream (QUEUE_UPSTREAM_AUTH=passthrough)."""
    models: ModelList
    batch_runner: BatchRunner
    """Puts the lines of batches in the background."""
    ready: bool = False

    """True once Redis was reached (this process's instance number taken, the hub running)."""

    def sealed_key(self, request: Request) -> bytes | None:
        if self.credentials is None:
            return None
        return self.credentials.seal(caller_upstream_key(request))

    async def admit(self, request: Request) -> Principal:
        """Who the request is (401 if nobody), within their rate limit (429 if not), while
        the store is reachable (503 if not)."""
        if not self.ready:
            raise ServiceUnavailable("the queue's store is unavailable; retry shortly")
        principal = self.auth.principal(request)
        if principal.rate is not None and principal.burst is not None:
            wait_ms = await self.store.buckets.take(
                principal.key_id, principal.rate, principal.burst
            )
            if wait_ms:
                raise TooManyRequests(
                    f"rate limit of {principal.rate:g} requests/s exceeded",
                    retry_after=max(1, math.ceil(wait_ms / 1000)),
                )
        return principal

    def default_timeout(self, mode: ResponseMode) -> int:
        if mode is ResponseMode.CALLBACK:
            return self.settings.callback_timeout
        return self.settings.blocking_timeout
