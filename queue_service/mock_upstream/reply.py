"""What the mock model answers: the reply text split into tokens, plus token counts."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from .controls import MockControls, ToolCallControl

_TOKEN = re.compile(r"\s*\S+\s*")
_ARGUMENT_FRAGMENT = 4
"""Characters per streamed fragment of tool-call arguments."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One planned model answer, shared by the OpenAI and Anthropic renderings."""

    id: str
    model: str
    created: int
    content: list[str]
    reasoning: list[str]
    tool_call: ToolCallControl | None
    tool_fragments: list[str]
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return len(self.content) + len(self.reasoning) + len(self.tool_fragments)


def tokenize(text: str) -> list[str]:
    """Split into words, each with its following whitespace, so that joining gives `text`."""
    tokens: list[str] = _TOKEN.findall(text)
    return tokens or ([text] if text else [])


def content_text(content: Any) -> str:
    """The text of a message content: a string, or the text parts of a content array."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return ""


def count_words(messages: list[Any]) -> int:
    """The prompt token count: words across all message contents."""
    return sum(
        len(content_text(message.get("content")).split())
        for message in messages
        if isinstance(message, dict)
    )


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def build_reply(
    *,
    response_id: str,
    model: str,
    user_text: str,
    prompt_tokens: int,
    controls: MockControls,
    reasoning_by_default: bool,
) -> Reply:
    content: list[str] = []
    fragments: list[str] = []
    call = controls.tool_call
    if call is not None:
        args = call.arguments
        fragments = [
            args[start : start + _ARGUMENT_FRAGMENT]
            for start in range(0, len(args), _ARGUMENT_FRAGMENT)
        ]
    elif controls.tokens is not None:
        content = [f"tok{i} " for i in range(controls.tokens)]
        if content:
            content[-1] = content[-1].rstrip()
    else:
        text = controls.reply if controls.reply is not None else f"Hello! You said: {user_text}"
        content = tokenize(text)
    reasoning: list[str] = []
    wanted = controls.reasoning
    if wanted is None:
        wanted = reasoning_by_default
    if isinstance(wanted, str):
        reasoning = tokenize(wanted)
    elif wanted:
        reasoning = tokenize(f"The user said: {user_text} I should greet them back.")
    return Reply(
        id=response_id,
        model=model,
        created=int(time.time()),
        content=content,
        reasoning=reasoning,
        tool_call=call,
        tool_fragments=fragments,
        prompt_tokens=prompt_tokens,
    )
