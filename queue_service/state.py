"""What the API keeps for its lifetime, on `app.state.queue` (built in the lifespan)."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from .auth import Authenticator
from .broker import Broker
from .hub import PubSubHub
from .ids import TaskIdFactory
from .models import PutContext, ResponseMode
from .settings import Settings


@dataclass
class AppState:
    settings: Settings
    redis: Redis
    broker: Broker
    hub: PubSubHub
    ids: TaskIdFactory
    auth: Authenticator
    put_context: PutContext

    def default_timeout(self, mode: ResponseMode) -> int:
        if mode is ResponseMode.CALLBACK:
            return self.settings.callback_timeout
        return self.settings.blocking_timeout
