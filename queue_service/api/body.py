"""Reading and validating request bodies, with clear 4xx errors for every bad input."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import Request

from queue_service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from queue_service.validation import describe_error

ModelT = TypeVar("ModelT", bound=BaseModel)


async def read_json_bytes(request: Request, max_bytes: int) -> bytes:
    """The raw body of a JSON request, refusing other media types and oversize bodies."""
    content_type = request.headers.get("content-type")
    if content_type is not None:
        media = content_type.partition(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise UnsupportedMediaType(
                f"Content-Type must be application/json, not {content_type!r}"
            )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body is larger than the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _describe(error: ErrorDetails) -> str:
    """A request's problem in the words a client needs; the rest as configuration files."""
    kind, location = error["type"], ".".join(str(part) for part in error["loc"])
    if kind == "json_invalid":
        return f"request body is not valid JSON: {error.get('ctx', {}).get('error')}"
    if kind == "model_type" and not location:
        return "request body must be a JSON object"
    if kind == "missing":
        return f"{location}: field required"
    if kind == "extra_forbidden":
        return f"{location}: unknown field"
    return describe_error(error)


def validate_object(model: type[ModelT], value: dict[str, Any], context: Any = None) -> ModelT:
    """Validate an already parsed object against `model`, as `parse_model` does bodies."""
    try:
        return model.model_validate(value, context=context)
    except ValidationError as exc:
        message = "; ".join(_describe(error) for error in exc.errors(include_url=False))
        raise BadRequest(message) from None


def parse_model(model: type[ModelT], body: bytes, context: Any = None) -> ModelT:
    """Validate a JSON body against `model`; every problem is listed in one 400 message."""
    try:
        return model.model_validate_json(body, context=context)
    except ValidationError as exc:
        message = "; ".join(_describe(error) for error in exc.errors(include_url=False))
        raise BadRequest(message) from None
