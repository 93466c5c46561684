"""Files (batch inputs and outputs): content kept in Redis in pieces, written and read one
piece at a time so a large file never sits whole in a process, and expiring with its
retention. A file belongs to one tenant: to anyone else it does not exist."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from queue_service.errors import PayloadTooLarge
from queue_service.timing import now_ms

from .keys import Keys

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: str
    tenant: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    """Seconds since the epoch (as OpenAI's file objects say it)."""
    expires_at: int
    content_type: str = "application/octet-stream"

    def view(self) -> dict[str, object]:
        """The file as OpenAI's API shows it."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


class Files:
    def __init__(self, redis: Redis, keys: Keys, retention_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self.retention_s = retention_s

    async def create(
        self,
        tenant: str,
        filename: str,
        purpose: str,
        pieces: AsyncIterator[bytes],
        max_bytes: int,
        *,
        content_type: str = "application/octet-stream",
        ttl_s: int | None = None,
    ) -> FileRecord:
        """Store a file from its pieces (PayloadTooLarge past `max_bytes`: nothing kept); it
        lives `ttl_s` seconds (default: the file retention)."""
        ttl = ttl_s or self.retention_s
        file_id = "file-" + secrets.token_hex(12)
        chunks = self._keys.file_chunks(file_id)
        size, buffered = 0, bytearray()
        try:
            async for piece in pieces:
                size += len(piece)
                if size > max_bytes:
                    raise PayloadTooLarge(f"the file is larger than {max_bytes} bytes")
                buffered += piece
                while len(buffered) >= CHUNK_BYTES:
                    await self._append(chunks, bytes(buffered[:CHUNK_BYTES]))
                    del buffered[:CHUNK_BYTES]
            if buffered:
                await self._append(chunks, bytes(buffered))
        except BaseException:
            await self._redis.delete(chunks)
            raise
        created = now_ms() // 1000
        record = FileRecord(
            file_id, tenant, filename, purpose, size, created, created + ttl, content_type
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._keys.file_meta(file_id),
                mapping={
                    "tenant": tenant,
                    "filename": filename,
                    "purpose": purpose,
                    "bytes": size,
                    "created_at": created,
                    "expires_at": created + ttl,
                    "content_type": content_type,
                },
            )
            pipe.expire(self._keys.file_meta(file_id), ttl)
            pipe.expire(chunks, ttl)
            pipe.zadd(self._keys.tenant_files(tenant), {file_id: created})
            await pipe.execute()
        return record

    async def _append(self, chunks: str, piece: bytes) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.rpush(chunks, piece)
            pipe.expire(chunks, self.retention_s)  # an upload cut short cleans up by itself
            await pipe.execute()

    async def get(self, file_id: str, tenant: str) -> FileRecord | None:
        raw = await cast(
            Awaitable[dict[bytes, bytes]], self._redis.hgetall(self._keys.file_meta(file_id))
        )
        if not raw or raw[b"tenant"].decode() != tenant:
            return None
        created = int(raw[b"created_at"])
        return FileRecord(
            file_id,
            tenant,
            raw[b"filename"].decode(),
            raw[b"purpose"].decode(),
            int(raw[b"bytes"]),
            created,
            int(raw.get(b"expires_at", created + self.retention_s)),
            raw.get(b"content_type", b"application/octet-stream").decode(),
        )

    async def content(self, file_id: str) -> bytes:
        """A (small) file's whole content: job inputs the worker sends upstream."""
        return b"".join([piece async for piece in self.pieces(file_id)])

    async def list(self, tenant: str, purpose: str | None = None) -> list[FileRecord]:
        """The tenant's files, newest first (expired ones are dropped from the index)."""
        index = self._keys.tenant_files(tenant)
        found, gone = [], []
        for raw_id in await self._redis.zrevrange(index, 0, -1):
            record = await self.get(raw_id.decode(), tenant)
            if record is None:
                gone.append(raw_id)
            elif purpose is None or record.purpose == purpose:
                found.append(record)
        if gone:
            await self._redis.zrem(index, *gone)
        return found

    async def pieces(self, file_id: str) -> AsyncIterator[bytes]:
        """The file's content, one stored piece at a time."""
        chunks = self._keys.file_chunks(file_id)
        index = 0
        while True:
            piece = await cast(Awaitable[bytes | None], self._redis.lindex(chunks, index))
            if piece is None:
                return
            yield piece
            index += 1

    async def delete(self, file_id: str, tenant: str) -> bool:
        if await self.get(file_id, tenant) is None:
            return False
        await self._redis.delete(self._keys.file_meta(file_id), self._keys.file_chunks(file_id))
        await self._redis.zrem(self._keys.tenant_files(tenant), file_id)
        return True
