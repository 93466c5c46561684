"""A minimal HTTP/1.1 client on raw asyncio streams, for load that costs the client little.

httpx spends about a millisecond of CPU per request here, which on a two-core machine is
taken from the very processes being measured. These helpers write prebuilt request bytes
on keep-alive connections and parse just enough of the answer: status, Content-Length or
chunked bodies, and server-sent events as they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import orjson

JSON_HEADERS = "content-type: application/json\r\n"


def post(port: int, path: str, body: Any) -> bytes:
    """The bytes of a keep-alive POST of `body` as JSON."""
    data = orjson.dumps(body)
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{JSON_HEADERS}"
        f"content-length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open files to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Reply(NamedTuple):
    status: int
    body: bytes


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(
        self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.port = port
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        return cls(port, reader, writer)

    async def _send(self, raw: bytes) -> None:
        """Write a request, reconnecting first if the server closed the idle connection."""
        if self.reader.at_eof() or self.writer.is_closing():
            await self.close()
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1", self.port, limit=1 << 20
            )
        self.writer.write(raw)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def request(self, raw: bytes) -> Reply:
        """Send a prebuilt request and read the whole answer."""
        await self._send(raw)
        status, headers = await self._head()
        if headers.get(b"transfer-encoding") == b"chunked":
            body = b"".join([chunk async for chunk in self._chunks()])
        else:
            body = await self.reader.readexactly(int(headers.get(b"content-length", b"0")))
        return Reply(status, body)

    async def events(self, raw: bytes) -> AsyncIterator[tuple[float, bytes]]:
        """Send a prebuilt request; yield (time.time() of arrival, raw event) per SSE event."""
        await self._send(raw)
        status, headers = await self._head()
        if status != 200 or headers.get(b"transfer-encoding") != b"chunked":
            raise RuntimeError(f"expected a chunked event stream, got status {status}")
        buffer = b""
        async for chunk in self._chunks():
            arrived = time.time()
            buffer += chunk
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                if event.strip():
                    yield arrived, event

    async def _head(self) -> tuple[int, dict[bytes, bytes]]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name:
                headers[name.strip().lower()] = value.strip().lower()
        return status, headers

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            size = int((await self.reader.readline()).split(b";", 1)[0], 16)
            if size == 0:
                await self.reader.readline()
                return
            chunk = await self.reader.readexactly(size + 2)
            yield chunk[:-2]


class Tap:
    """A TCP relay in front of a server that notes when each SSE event's end passes it.

    Put between a client and the mock upstream it timestamps the mock's events as they
    leave for the client, whether that client is the bench itself or a worker: the same
    point of reference for a direct read and a relayed one.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.seen: list[float] = []
        """time.time() at which each event end (a blank line) went by, all connections."""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _pipe(reader, up_writer, None),
            _pipe(up_reader, writer, self.seen),
            return_exceptions=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[float] | None
) -> None:
    tail = b""
    try:
        while data := await reader.read(1 << 16):
            if seen is not None:
                at = time.time()
                seen.extend([at] * (tail + data).count(b"\n\n"))
                tail = data[-1:]
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
