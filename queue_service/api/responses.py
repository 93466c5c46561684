"""The response envelope: `{"code", "timestamp", "data"}` and `{"code", "message", "timestamp"}`."""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _timestamp() -> int:
    return time.time_ns() // 1_000_000


def ok(data: Any) -> OrjsonResponse:
    return OrjsonResponse({"code": 200, "timestamp": _timestamp(), "data": data})


def error(status_code: int, message: str, headers: dict[str, str] | None = None) -> OrjsonResponse:
    body = {"code": status_code, "message": message, "timestamp": _timestamp()}
    return OrjsonResponse(body, status_code=status_code, headers=headers)
