"""The `memory` scenario's worker measurement: one blocking job whose upstream (a tiny
asyncio server of the scenario's own) answers far more than a job may take, chunked."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson

from scripts.bench.lib import Stack
from scripts.bench.memory_rig import (
    CHAT,
    PUT,
    QUEUE,
    SETTLE_S,
    Figures,
    Sampler,
    Size,
    parse_head,
    status_kib,
)

BIG_PIECE = 1 << 20


class BigUpstream:
    """An upstream answering every chat completion with `size` bytes in pieces (chunked,
    `application/json`, no Content-Length), except prompts saying "small" (a short reply)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0
        """Body bytes of the last big answer written before the client closed."""
        self.finished = False
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            _, headers = parse_head(b"HTTP/1.1 0 request\r\n" + head.split(b"\r\n", 1)[1])
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if b"small" in body:
                reply = orjson.dumps(_completion("small"))
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(reply), reply)
                )
                await writer.drain()
                return
            await self._big(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _big(self, writer: asyncio.StreamWriter) -> None:
        self.sent, self.finished = 0, False
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        opening = b'{"id":"big","object":"chat.completion","choices":[{"index":0,"message":'
        opening += b'{"role":"assistant","content":"'
        closing = b'"},"finish_reason":"stop"}]}'
        filler = b"x" * BIG_PIECE
        for piece in self._pieces(opening, filler, closing):
            writer.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            await writer.drain()
            self.sent += len(piece)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        self.finished = True

    def _pieces(self, opening: bytes, filler: bytes, closing: bytes) -> list[bytes]:
        middle = self.size - len(opening) - len(closing)
        count, rest = divmod(middle, len(filler))
        return [opening, *([filler] * count), filler[:rest], closing]


def _completion(text: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": text}
    return {
        "id": "small",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }


def _blocking_put(text: str) -> dict[str, Any]:
    data = {"model": "m", "messages": [{"role": "user", "content": text}]}
    return {
        "queue": QUEUE,
        "endpoint": CHAT,
        "level": 0,
        "data": data,
        "response_mode": "blocking",
        "timeout": 600,
    }


async def big_answer(redis_url: str, stack: Stack, size: Size) -> Figures:
    figures = Figures()
    upstream = BigUpstream(size.big_bytes)
    await upstream.start()
    stack.upstream_url = upstream.url
    try:
        await asyncio.to_thread(stack.start, redis_url)
        worker = stack.processes[0].pid
        async with httpx.AsyncClient(timeout=size.limit_s) as client:
            put = f"{stack.api_url}{PUT}"
            warm = await client.post(put, json=_blocking_put("small"))
            if warm.status_code != 200:
                raise RuntimeError(f"the warm-up put answered {warm.status_code}: {warm.text}")
            await asyncio.sleep(1.0)
            figures.before = status_kib(worker)[0]
            started = time.monotonic()
            async with Sampler(worker, 0.05).running() as sampler:
                answer = await client.post(put, json=_blocking_put("big"))
            figures.seconds = time.monotonic() - started
        figures.peak = sampler.peak
        figures.hwm = status_kib(worker)[1]
        await asyncio.sleep(SETTLE_S)
        figures.after = status_kib(worker)[0]
        figures.outcome = _big_outcome(answer, upstream)
    finally:
        await asyncio.to_thread(stack.stop)
        await upstream.stop()
    return figures


def _big_outcome(answer: httpx.Response, upstream: BigUpstream) -> str:
    try:
        error = answer.json().get("error") or {}
    except ValueError:
        error = {}
    kind = f" {error.get('type')}" if isinstance(error, dict) and error.get("type") else ""
    sent = f"{upstream.sent / 2**20:,.0f} MiB"
    whole = "all of it" if upstream.finished else "then the worker closed"
    return f"answered {answer.status_code}{kind}; upstream sent {sent} ({whole})"
