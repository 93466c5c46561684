"""The workers' outbound HTTP: httpx's API on aiohttp's connections (`httpx-aiohttp`), which
cost a worker about a quarter less CPU per job than httpx's own pool (BENCHMARKS.md `worker`).

httpx-aiohttp maps every aiohttp connection error to `httpx.ConnectTimeout`, which would
tell a caller that a request never left when it may have: a refused connection is a
`ConnectError`, and a connection that dropped once the request was sent is a `ReadError`, so
the callers' retry rules (a task-API submit is retried only when it surely created nothing
upstream) keep their meaning; and a malformed answer, which it leaves as aiohttp's own error,
is httpx's `RemoteProtocolError`, as with httpx's own pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


def _remapped(exc: httpx.TransportError) -> httpx.TransportError:
    """The httpx error that says what really happened, from the aiohttp error behind `exc`."""
    cause = exc.__cause__
    message = str(cause) if cause is not None else str(exc)
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(cause, aiohttp.SocketTimeoutError | aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(message)
    if isinstance(cause, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return httpx.ReadError(message)  # the connection went after the request was sent
    return exc


class _RemappedStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except httpx.TransportError as exc:
            raise _remapped(exc) from exc.__cause__
        except aiohttp.ClientError as exc:  # one httpx-aiohttp leaves unmapped
            raise httpx.RemoteProtocolError(str(exc)) from exc

    async def aclose(self) -> None:
        await self._stream.aclose()


class WorkerTransport(AiohttpTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except httpx.TransportError as exc:
            raise _remapped(exc) from exc.__cause__
        except aiohttp.ClientError as exc:  # a malformed answer: httpx-aiohttp leaves it as is
            raise httpx.RemoteProtocolError(str(exc)) from exc
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _RemappedStream(response.stream)
        return response
