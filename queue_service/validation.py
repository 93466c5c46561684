"""Pydantic validation errors as one line of `where: what` problems (request bodies and
configuration files word them alike)."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_core import ErrorDetails


def describe_error(error: ErrorDetails) -> str:
    """One problem: `where: what` (just `what` when it concerns the whole value)."""
    where = ".".join(str(part) for part in error["loc"])
    what = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {what}" if where else what


def describe(exc: ValidationError) -> str:
    """Every problem of a validation error on one line."""
    return "; ".join(describe_error(error) for error in exc.errors(include_url=False))
