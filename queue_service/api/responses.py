"""The response envelope: `{"code", "timestamp", "data"}` and `{"code", "message", "timestamp"}`."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

from queue_service.timing import now_ms


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def ok(data: Any) -> OrjsonResponse:
    return OrjsonResponse({"code": 200, "timestamp": now_ms(), "data": data})


def error(status_code: int, message: str, headers: dict[str, str] | None = None) -> OrjsonResponse:
    body = {"code": status_code, "message": message, "timestamp": now_ms()}
    return OrjsonResponse(body, status_code=status_code, headers=headers)
