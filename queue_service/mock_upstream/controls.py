"""Per-request behaviour controls, sent in the request body under the key ``"mock"``."""

from __future__ import annotations

from typing import Any, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ToolCallControl(BaseModel):
    """Answer with a call of this function instead of text."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1)
    arguments: str = "{}"
    """The function arguments as a JSON object encoded in a string, like OpenAI sends them."""

    @field_validator("arguments")
    @classmethod
    def _json_object(cls, value: str) -> str:
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise ValueError("arguments must be a JSON string") from exc
        if not isinstance(parsed, dict):
            raise ValueError("arguments must encode a JSON object")
        return value


class FailureControls(BaseModel):
    """The controls every API of the mock takes (the model APIs' `MockControls`, the task APIs'
    `TaskControls`): an HTTP error answered before anything else is looked at. All optional,
    unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    status: int | None = Field(default=None, ge=400, le=599)
    """Fail with this HTTP status, in the API's error format."""
    retry_after: float | None = Field(default=None, ge=0)
    """`Retry-After` header sent with `status`."""
    fail_times: int | None = Field(default=None, ge=0)
    """Fail only the first N requests with the same `key`, then answer normally."""
    key: str = ""
    """Counter name for `fail_times`."""

    @model_validator(mode="after")
    def _failure_consistent(self) -> Self:
        # Pydantic runs it before the subclasses' own checks: its message wins over theirs.
        if self.status is None and (self.retry_after is not None or self.fail_times is not None):
            raise ValueError("retry_after and fail_times only make sense with status")
        return self

    def failure_headers(self) -> dict[str, str] | None:
        """The extra headers of the `status` error: `Retry-After` when asked for."""
        retry = self.retry_after
        if retry is None:
            return None
        # Whole seconds without a decimal point ("2", not "2.0"), as servers send them.
        return {"retry-after": str(int(retry)) if retry.is_integer() else str(retry)}


class MockControls(FailureControls):
    """Everything a request to a model API can ask of the mock; all optional, unknown keys
    rejected."""

    ttft: float | None = Field(default=None, ge=0)
    token_latency: float | None = Field(default=None, ge=0)
    reply: str | None = None
    """Reply with this text instead of echoing the last user message."""
    tokens: int | None = Field(default=None, ge=0)
    """Reply with exactly N tokens: "tok0 tok1 ..."."""
    reasoning: bool | str | None = None
    """Force reasoning on (a string gives its text) or off; unset: the API's own rules."""
    break_after: int | None = Field(default=None, ge=0)
    """Stream: drop the connection after N events (or at the end of a shorter stream)."""
    error_after: int | None = Field(default=None, ge=0)
    """Stream: send an in-band error event after N events (or at the end) and stop."""
    hang: bool = False
    """Never answer; wait until the client goes away."""
    tool_call: ToolCallControl | None = None
    refuse_service_tier: str | None = None
    """Answer 429 "Resource unavailable" (OpenAI's answer when flex capacity is short) to a
    request whose `service_tier` is this one."""
    service_tier_delay: float | None = Field(default=None, ge=0)
    """Seconds more before the first byte when the request names a `service_tier` (a slower
    tier, like flex)."""

    @model_validator(mode="after")
    def _reply_consistent(self) -> Self:
        if self.reply is not None and self.tokens is not None:
            raise ValueError("give reply or tokens, not both")
        return self


NO_CONTROLS = MockControls()


def invalid_controls_message(exc: ValidationError) -> str:
    """The 400 message of every API for a `mock` object that fails validation: one `where: why`
    per problem (`mock` for the object as a whole)."""
    problems = "; ".join(
        f"{'.'.join(map(str, error['loc'])) or 'mock'}: {error['msg']}" for error in exc.errors()
    )
    return f"Invalid mock controls: {problems}"


def parse_controls(value: Any) -> MockControls:
    """Validate the `mock` object of a request body (raises pydantic.ValidationError)."""
    return NO_CONTROLS if value is None else MockControls.model_validate(value)


GENERATIVE_ONLY = frozenset(
    {"token_latency", "reply", "tokens", "reasoning", "break_after", "error_after", "tool_call"}
)
"""Controls shaping a model reply, meaningless to the endpoints that answer in one piece."""
