"""What the one-piece OpenAI-style endpoints share: ids, control checks, input lists."""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from typing import Any

import orjson

from .controls import GENERATIVE_ONLY, MockControls
from .dialect import Answer, Call
from .openai import OpenAIStyle


class OneShot(OpenAIStyle, ABC):
    path: str
    id_prefix: str

    def new_id(self) -> str:
        return f"{self.id_prefix}-{secrets.token_hex(12)}"

    def check(self, body: dict[str, Any], controls: MockControls) -> str | None:
        misplaced = sorted(controls.model_fields_set & GENERATIVE_ONLY)
        if misplaced:
            return f"mock.{', mock.'.join(misplaced)}: no model reply at {self.path}."
        return self.problem(body)

    @abstractmethod
    def problem(self, body: dict[str, Any]) -> str | None:
        """Why the body is invalid for this endpoint, or None."""

    @abstractmethod
    def answer(self, call: Call) -> Answer: ...


def json_answer(value: Any) -> Answer:
    return Answer(orjson.dumps(value), "application/json")


def texts(value: Any) -> list[str] | None:
    """An `input` that is a string or an array of strings, as a list; None otherwise."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        return None
    if not all(isinstance(item, str) and item for item in items):
        return None
    return items


def word_count(items: list[str]) -> int:
    return sum(len(item.split()) for item in items)
