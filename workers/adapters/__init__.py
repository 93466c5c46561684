"""The adapter registry: endpoint path -> the adapter that serves it."""

from __future__ import annotations

from .base import Adapter, Upstream, UpstreamReply
from .openai_chat import ChatCompletionsAdapter

ADAPTERS: dict[str, Adapter] = {
    adapter.endpoint: adapter for adapter in (ChatCompletionsAdapter(),)
}

__all__ = ["ADAPTERS", "Adapter", "Upstream", "UpstreamReply"]
