"""The workers' outbound transport says truly whether a failed request left: a refused
connection is a ConnectError, a connection dropped after the request a ReadError."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from queue_service.dev.embedded_redis import free_port
from workers.http_transport import WorkerTransport


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=WorkerTransport(), timeout=5) as http:
        yield http


async def test_a_refused_connection_is_a_connect_error(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.ConnectError):
        await client.post(f"http://127.0.0.1:{free_port()}/", content=b"{}")


async def test_a_connection_dropped_after_the_request_is_a_read_error(
    client: httpx.AsyncClient,
) -> None:
    async def read_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(read_then_hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(httpx.ReadError):
            await client.post(f"http://127.0.0.1:{port}/", content=b"{}")


async def test_a_body_cut_short_is_a_read_error(client: httpx.AsyncClient) -> None:
    async def half_a_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(half_a_body, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, client.stream("GET", f"http://127.0.0.1:{port}/") as response:
        assert response.status_code == 200
        with pytest.raises(httpx.ReadError):
            await response.aread()


async def test_a_malformed_answer_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def gibberish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(gibberish, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(f"http://127.0.0.1:{port}/", content=b"{}")
