"""Endpoints that take files (audio transcriptions and translations, image edits and
variations): the job's fields and files go upstream as a real multipart form, each file with
its original filename and content type.

The job's `data` names its files as `{"$file": "<file id>"}` (one, or a list); the executor
reads them from the store into `UploadPart`s before the call (see executor.py).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from ..retry import parse_retry_after
from ..sse import SSEEvent
from .base import StreamAssembler, Upstream, UpstreamReply
from .http import Streamed, read_body
from .json_endpoints import NoStreamAssembler


@dataclass(frozen=True, slots=True)
class UploadPart:
    filename: str
    content_type: str
    content: bytes


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


class MultipartAdapter:
    """`streams`: the endpoint has a stream form (transcriptions, for the models that stream:
    `transcript.text.delta` events, then `transcript.text.done`); the others answer whole,
    a stream asked for included."""

    def __init__(self, endpoint: str, streams: bool = False) -> None:
        self.endpoint = endpoint
        self.streams = streams

    def _request(
        self, client: httpx.AsyncClient, upstream: Upstream, data: dict[str, Any]
    ) -> httpx.Request:
        fields: dict[str, list[str]] = {}
        files: list[tuple[str, tuple[str, bytes, str]]] = []
        for name, value in data.items():
            if value is None or (name == "stream" and not (self.streams and value is True)):
                continue
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, UploadPart):
                    files.append((name, (item.filename, item.content, item.content_type)))
                else:
                    fields.setdefault(name, []).append(_text(item))
        headers = {"authorization": f"Bearer {upstream.api_key}"} if upstream.api_key else {}
        url = upstream.url(self.endpoint)
        return client.build_request("POST", url, data=fields, files=files, headers=headers)

    async def call(
        self,
        client: httpx.AsyncClient,
        upstream: Upstream,
        data: dict[str, Any],
        max_bytes: int | None = None,
    ) -> UpstreamReply:
        async with Streamed(client, self._request(client, upstream, data)) as response:
            body = await read_body(response, max_bytes)
        return UpstreamReply(
            response.status_code,
            body,
            response.headers.get("content-type", "application/json"),
            parse_retry_after(response.headers.get("retry-after")),
        )

    def stream(
        self, client: httpx.AsyncClient, upstream: Upstream, data: dict[str, Any]
    ) -> AbstractAsyncContextManager[httpx.Response]:
        return Streamed(client, self._request(client, upstream, data))

    def assembler(self) -> StreamAssembler:
        return TranscriptAssembler() if self.streams else NoStreamAssembler(self.endpoint)


class TranscriptAssembler:
    """Rebuilds `{"text"}` from a streamed transcript's events."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._done: str | None = None
        self._error: Any | None = None

    def feed(self, event: SSEEvent) -> None:
        try:
            value = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return
        kind = value.get("type") if isinstance(value, dict) else None
        if kind == "transcript.text.delta":
            self._text.append(str(value.get("delta", "")))
        elif kind == "transcript.text.done":
            self._done = str(value.get("text", ""))
        elif event.event == "error" or kind == "error":
            self._error = value.get("error", value)

    def error(self) -> Any | None:
        return self._error

    def result(self) -> bytes:
        text = self._done if self._done is not None else "".join(self._text)
        return orjson.dumps({"text": text})


TRANSCRIPTIONS = MultipartAdapter("/v1/audio/transcriptions", streams=True)
TRANSLATIONS = MultipartAdapter("/v1/audio/translations")
IMAGE_EDITS = MultipartAdapter("/v1/images/edits")
IMAGE_VARIATIONS = MultipartAdapter("/v1/images/variations")
