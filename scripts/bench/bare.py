"""The bare baseline of the `throughput` scenario: a Starlette endpoint that only parses the
JSON body and XADDs it, served the way `queue-service api` is (uvicorn, one process).

    python -m scripts.bench.bare PORT REDIS_URL STREAM_KEY
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def create_bare_app(redis_url: str, stream: str) -> Starlette:
    redis = Redis.from_url(redis_url, socket_connect_timeout=5)

    async def put(request: Request) -> Response:
        body = await request.body()
        job = orjson.loads(body)
        entry = await redis.xadd(stream, {"queue": job["queue"], "job": body})
        answer = {"code": 200, "timestamp": time.time_ns() // 1_000_000, "data": entry.decode()}
        return Response(orjson.dumps(answer), media_type="application/json")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await redis.aclose()

    return Starlette(routes=[Route("/v1/queue/put", put, methods=["POST"])], lifespan=lifespan)


def main() -> None:
    port, redis_url, stream = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    app = create_bare_app(redis_url, stream)
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
