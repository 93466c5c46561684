"""Cursor pagination as OpenAI's and Anthropic's list endpoints do it: the items after a
given id, `limit` of them, and whether more follow."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, TypeVar

from starlette.requests import Request

from queue_service.errors import BadRequest

T = TypeVar("T")


def page_of(
    request: Request, ids: Sequence[T], *, after: str, default: int, most: int
) -> tuple[Sequence[T], bool]:
    """The ids of one page (after the query's `after` id, `limit` of them), and whether more
    follow."""
    cursor = request.query_params.get(after)
    if cursor is not None:
        ids = ids[ids.index(cursor) + 1 :] if cursor in ids else []
    text = request.query_params.get("limit", str(default))
    if not re.fullmatch(r"[0-9]{1,9}", text) or not 1 <= int(text) <= most:
        raise BadRequest(f"limit must be a whole number from 1 to {most}")
    limit = int(text)
    return ids[:limit], len(ids) > limit


def listed(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """A list answer: the items, the ids at both ends, whether more follow."""
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }
