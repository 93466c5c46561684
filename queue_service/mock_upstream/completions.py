"""OpenAI legacy completions (`/v1/completions`): a `prompt` in, `choices[].text` out."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import orjson

from .controls import MockControls
from .openai import DONE, OpenAIStyle, data_event, usage_of
from .reply import Reply
from .streaming import Frame


class CompletionsDialect(OpenAIStyle):
    """One string `prompt`, one choice; the reply text is the same as chat's."""

    def new_id(self) -> str:
        return f"cmpl-{secrets.token_hex(12)}"

    def check(self, body: dict[str, Any], controls: MockControls) -> str | None:
        if not isinstance(body.get("prompt"), str):
            return "The body must be a JSON object with a string `prompt` (the mock takes one)."
        if controls.tool_call is not None or controls.reasoning:
            return "mock.tool_call and mock.reasoning do not apply to /v1/completions."
        return None

    def user_text(self, body: dict[str, Any]) -> str:
        prompt: str = body["prompt"]
        return prompt

    def wants_reasoning(self, body: dict[str, Any], model: str) -> bool:
        return False

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        return len(self.user_text(body).split())

    def completion_body(self, reply: Reply) -> bytes:
        choice = {
            "text": "".join(reply.content),
            "index": 0,
            "logprobs": None,
            "finish_reason": "stop",
        }
        return orjson.dumps(
            {
                "id": reply.id,
                "object": "text_completion",
                "created": reply.created,
                "model": reply.model,
                "choices": [choice],
                "usage": usage_of(reply),
            }
        )

    def stream_frames(self, reply: Reply, body: dict[str, Any]) -> Iterator[Frame]:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        base: dict[str, Any] = {
            "id": reply.id,
            "object": "text_completion",
            "created": reply.created,
            "model": reply.model,
        }
        if include_usage:
            base["usage"] = None

        def chunk(text: str, finish_reason: str | None = None) -> bytes:
            choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
            return data_event({**base, "choices": [choice]})

        for piece in reply.content:
            yield Frame(chunk(piece), token=True)
        yield Frame(chunk("", "stop"))
        if include_usage:
            yield Frame(data_event({**base, "choices": [], "usage": usage_of(reply)}))
        yield DONE
