"""A Python client for queue-service, synchronous (`QueueClient`) and asyncio (`AsyncQueueClient`).

with QueueClient("http://127.0.0.1:8080", api_key="...") as client:
    task_id = client.put("batch", "/v1/chat/completions", body, callback_url=url)
    view = client.wait(task_id)
"""

from .aio import AsyncQueueClient
from .errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    NotFound,
    QueueClientError,
    QueueFull,
    RequestTimeout,
    ServiceUnavailable,
    StreamError,
    Unauthorized,
    UpstreamError,
    WaitTimeout,
)
from .protocol import TERMINAL_STATUSES, BlockingResponse
from .sse import StreamEvent
from .sync import QueueClient

__all__ = [
    "TERMINAL_STATUSES",
    "AsyncQueueClient",
    "BadRequest",
    "BlockingResponse",
    "Conflict",
    "ConnectionFailed",
    "NotFound",
    "QueueClient",
    "QueueClientError",
    "QueueFull",
    "RequestTimeout",
    "ServiceUnavailable",
    "StreamError",
    "StreamEvent",
    "Unauthorized",
    "UpstreamError",
    "WaitTimeout",
]
