"""`/v1/completions`: OpenAI legacy (prompt in, text out) completions."""

from __future__ import annotations

from typing import Any

from .openai_style import ChunkAssembler, OpenAIStyleAdapter

_LOGPROB_LISTS = ("tokens", "token_logprobs", "top_logprobs", "text_offset")
"""The per-token lists of a choice's `logprobs`, which chunks extend."""


class CompletionsAdapter(OpenAIStyleAdapter):
    endpoint = "/v1/completions"

    def assembler(self) -> CompletionsStreamAssembler:
        return CompletionsStreamAssembler()


class CompletionsStreamAssembler(ChunkAssembler):
    """Joins streamed `text_completion` chunks into the one the non-stream API returns."""

    completion_object = "text_completion"

    def _feed_choice(self, choice: dict[str, Any]) -> None:
        index = choice.get("index", 0)
        state = self._choices.setdefault(
            index, {"text": "", "index": index, "logprobs": None, "finish_reason": None}
        )
        state["text"] += choice.get("text") or ""
        if choice.get("finish_reason"):
            state["finish_reason"] = choice["finish_reason"]
        logprobs = choice.get("logprobs")
        if logprobs:
            joined = state["logprobs"] = state["logprobs"] or {name: [] for name in _LOGPROB_LISTS}
            for name in _LOGPROB_LISTS:
                joined[name].extend(logprobs.get(name) or ())

    def _choice(self, index: int, state: dict[str, Any]) -> dict[str, Any]:
        return state
