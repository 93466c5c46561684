"""The tokens an upstream's answer says it used, read from the answer's `usage` object.

One parser for every protocol the adapters speak, since the outcome body is all a finished
job has: OpenAI-style (`prompt_tokens`, `completion_tokens`,
`completion_tokens_details.reasoning_tokens`; embeddings and rerank may give only
`total_tokens`, all of it input) and Anthropic/OpenAI-Responses-style (`input_tokens` plus
Anthropic's cache tokens, which are billed as input; `output_tokens`;
`output_tokens_details.reasoning_tokens`). Streamed answers are assembled into the same
one-piece body before their outcome is stored (`adapters/openai_style.py`,
`adapters/anthropic_messages.py`), so they need nothing of their own.

Any body is possible here (an upstream's error page, a truncated or hostile answer): the
parser never raises, and a count that is not a sane token count is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

MOST_TOKENS = 10**12
"""Beyond this a reported count is nonsense (and would overflow the store's counters)."""

INPUT_TOKENS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@dataclass(frozen=True, slots=True)
class Usage:
    prompt: int
    completion: int
    reasoning: int
    """The part of `completion` spent reasoning, where the upstream reports it."""


def usage_of(body: bytes, content_type: str) -> Usage | None:
    """The answer's token counts; None when it reports none (not JSON, no `usage` object,
    no token count in it)."""
    if "json" not in content_type:
        return None
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return None
    if any(name in usage for name in (*INPUT_TOKENS, "output_tokens")):
        found = [_count(usage, name) for name in INPUT_TOKENS]
        completion = _count(usage, "output_tokens")
        details = usage.get("output_tokens_details")
    else:
        found = [_count(usage, "prompt_tokens")]
        completion = _count(usage, "completion_tokens")
        details = usage.get("completion_tokens_details")
        if found == [None] and completion is None:
            found = [_count(usage, "total_tokens")]
    if all(count is None for count in found) and completion is None:
        return None
    reasoning = _count(details, "reasoning_tokens") if isinstance(details, dict) else None
    return Usage(sum(count or 0 for count in found), completion or 0, reasoning or 0)


def _count(usage: dict[str, Any], name: str) -> int | None:
    value = usage.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MOST_TOKENS:
        return value
    return None
