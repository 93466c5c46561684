"""The adapter registry: endpoint path -> the adapter that serves it."""

from __future__ import annotations

from .anthropic_messages import MessagesAdapter
from .audio_speech import SpeechAdapter
from .base import Adapter, Upstream, UpstreamReply
from .json_endpoints import EMBEDDINGS, IMAGES, MODERATIONS, REALTIME_SESSIONS, RERANK
from .multipart import IMAGE_EDITS, IMAGE_VARIATIONS, TRANSCRIPTIONS, TRANSLATIONS
from .openai_chat import ChatCompletionsAdapter
from .openai_completions import CompletionsAdapter
from .task_apis import SUBMIT_ADAPTERS, TASK_APIS, TaskApi

_ALL: tuple[Adapter, ...] = (
    ChatCompletionsAdapter(),
    MessagesAdapter(),
    CompletionsAdapter(),
    EMBEDDINGS,
    RERANK,
    MODERATIONS,
    IMAGES,
    SpeechAdapter(),
    REALTIME_SESSIONS,
    TRANSCRIPTIONS,
    TRANSLATIONS,
    IMAGE_EDITS,
    IMAGE_VARIATIONS,
    *SUBMIT_ADAPTERS,
)
ADAPTERS: dict[str, Adapter] = {adapter.endpoint: adapter for adapter in _ALL}

__all__ = ["ADAPTERS", "TASK_APIS", "Adapter", "TaskApi", "Upstream", "UpstreamReply"]
