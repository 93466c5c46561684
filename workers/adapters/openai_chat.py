"""`/v1/chat/completions`: OpenAI-compatible chat (DeepSeek `reasoning_content` included)."""

from __future__ import annotations

from typing import Any

from .openai_style import ChunkAssembler, OpenAIStyleAdapter


class ChatCompletionsAdapter(OpenAIStyleAdapter):
    endpoint = "/v1/chat/completions"

    def assembler(self) -> ChatStreamAssembler:
        return ChatStreamAssembler()


class ChatStreamAssembler(ChunkAssembler):
    """Joins `chat.completion.chunk`s into the `chat.completion` the non-stream API returns."""

    completion_object = "chat.completion"

    def _feed_choice(self, choice: dict[str, Any]) -> None:
        index = choice.get("index", 0)
        state = self._choices.setdefault(
            index,
            {"role": "assistant", "content": None, "reasoning": "", "tools": {}, "finish": None},
        )
        delta = choice.get("delta") or {}
        if delta.get("role"):
            state["role"] = delta["role"]
        if delta.get("content") is not None:  # null throughout a tool-call-only answer
            state["content"] = (state["content"] or "") + delta["content"]
        state["reasoning"] += delta.get("reasoning_content") or ""
        for call in delta.get("tool_calls") or ():
            joined = state["tools"].setdefault(
                call.get("index", 0), {"id": None, "type": "function", "name": "", "arguments": ""}
            )
            joined["id"] = call.get("id") or joined["id"]
            joined["type"] = call.get("type") or joined["type"]
            function = call.get("function") or {}
            joined["name"] += function.get("name") or ""
            joined["arguments"] += function.get("arguments") or ""
        if choice.get("finish_reason"):
            state["finish"] = choice["finish_reason"]

    def _choice(self, index: int, state: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": state["role"], "content": state["content"]}
        if state["reasoning"]:
            message["reasoning_content"] = state["reasoning"]
        if state["tools"]:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": call["type"],
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
                for _, call in sorted(state["tools"].items())
            ]
        return {
            "index": index,
            "message": message,
            "logprobs": None,
            "finish_reason": state["finish"],
        }
