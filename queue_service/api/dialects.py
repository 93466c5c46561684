"""Errors in the dialect of the API a route imitates, so each official SDK raises its own
typed exceptions: OpenAI's `{"error": {...}}` and Anthropic's `{"type": "error", ...}`.
Routes of the put envelope answer in the envelope (`responses.error`)."""

from __future__ import annotations

import enum

from starlette.requests import Request

from .responses import OrjsonResponse, error


class Dialect(enum.Enum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def speak(request: Request, dialect: Dialect) -> None:
    """Mark the request: errors from here on are answered in `dialect`."""
    request.state.dialect = dialect


def error_response(
    request: Request, status_code: int, message: str, headers: dict[str, str] | None = None
) -> OrjsonResponse:
    """The error answer in the request's dialect (the put envelope when it has none)."""
    dialect: Dialect | None = getattr(request.state, "dialect", None)
    if dialect is Dialect.OPENAI:
        kind = OPENAI_TYPES.get(status_code, "server_error")
        body: dict[str, object] = {
            "error": {"message": message, "type": kind, "param": None, "code": None}
        }
    elif dialect is Dialect.ANTHROPIC:
        kind = ANTHROPIC_TYPES.get(status_code, "api_error")
        body = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        return error(status_code, message, headers=headers)
    return OrjsonResponse(body, status_code=status_code, headers=headers)
