"""A callback inbox beside the mock upstream, so `queue-service dev` has somewhere to call back."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

log = logging.getLogger("queue_service.mock_upstream.inbox")


class CallbackInbox:
    """`POST /_mock/callbacks` records (and logs) a callback; `GET` lists those received."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    async def endpoint(self, request: Request) -> Response:
        if request.method == "GET":
            return Response(orjson.dumps(self.received), media_type="application/json")
        try:
            callback = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return Response(b'{"error":"not JSON"}', 400, media_type="application/json")
        self.received.append(callback)
        if isinstance(callback, dict):
            log.info(
                "callback received: %s %s (status code %s)",
                callback.get("task_id"),
                callback.get("status"),
                callback.get("status_code"),
            )
        return Response(b'{"ok":true}', media_type="application/json")

    def route(self) -> Route:
        return Route("/_mock/callbacks", self.endpoint, methods=["GET", "POST"])
