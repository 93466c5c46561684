"""The drills' callback receiver: a tiny asyncio HTTP/1.1 server that records every callback.

It can be taken down (it stops listening and drops its open connections, so senders get
"connection refused") and brought back on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson

from queue_service.dev.embedded_redis import free_port

OK_RESPONSE = (
    b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One callback POST as it arrived."""

    at: float
    """time.monotonic() on arrival."""
    status: str
    status_code: int
    text: str | None
    """The reply text (the mock echoes the job's prompt), when the body is a completion."""
    idempotency_key: str


def reply_text(body: Any) -> str | None:
    """The first choice's message text of a chat completion body, if it is one."""
    try:
        text = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return text if isinstance(text, str) else None


class CallbackReceiver:
    """Records callbacks by task id at `url`; `down()` refuses connections until `up()`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.deliveries: dict[str, list[Delivery]] = defaultdict(list)
        self.malformed = 0
        self.answer_after = 0.0
        """Seconds to take before answering a callback (after recording it): a slow receiver."""
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cb"

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, reuse_address=True, backlog=512
            )

    async def down(self) -> None:
        """Stop listening and drop every open connection (keep-alive ones too)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._connections):
            writer.transport.abort()
        self._connections.clear()
        with contextlib.suppress(Exception):
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while self._server is not None:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, headers = _parse_head(head)
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                answer = self._answer(request_line, headers, body)
                if self.answer_after:
                    await asyncio.sleep(self.answer_after)
                writer.write(answer)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    def _answer(self, request_line: str, headers: dict[str, str], body: bytes) -> bytes:
        method, _, rest = request_line.partition(" ")
        path = rest.partition(" ")[0]
        if method != "POST" or path != "/cb":
            return NOT_FOUND
        try:
            payload = orjson.loads(body)
            task_id = str(payload["task_id"])
            delivery = Delivery(
                at=time.monotonic(),
                status=str(payload["status"]),
                status_code=int(payload["status_code"]),
                text=reply_text(payload.get("body")),
                idempotency_key=headers.get("idempotency-key", ""),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.malformed += 1
            return BAD_REQUEST
        self.deliveries[task_id].append(delivery)
        return OK_RESPONSE


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    request_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return request_line, headers
