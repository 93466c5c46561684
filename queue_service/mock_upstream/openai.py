"""OpenAI chat completions: bodies, stream chunks and errors (DeepSeek reasoning included),
and the auth and error format every OpenAI-style endpoint of the mock shares."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from starlette.responses import Response

from .controls import MockControls
from .dialect import conversation_problem
from .reply import Reply, count_words, last_user_text
from .streaming import Frame

_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
DONE = Frame(b"data: [DONE]\n\n")


def data_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def openai_error(status: int, message: str) -> dict[str, Any]:
    default = ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    kind, code = _ERROR_KINDS.get(status, default)
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def usage_of(reply: Reply) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }
    if reply.reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": len(reply.reasoning)}
    return usage


class OpenAIStyle:
    """Bearer auth and OpenAI's error body, which OpenAI-compatible APIs share."""

    stream_error = data_event(
        openai_error(
            500, "The server had an error while processing your request. Sorry about that!"
        )
    )

    def authorized(self, headers: Mapping[str, str], api_key: str) -> bool:
        return headers.get("authorization") == f"Bearer {api_key}"

    def error_response(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        body = orjson.dumps(openai_error(status, message))
        return Response(body, status, headers, "application/json")


class OpenAIDialect(OpenAIStyle):
    def new_id(self) -> str:
        return f"chatcmpl-{secrets.token_hex(12)}"

    def check(self, body: dict[str, Any], controls: MockControls) -> str | None:
        return conversation_problem(body, controls)

    def user_text(self, body: dict[str, Any]) -> str:
        return last_user_text(body["messages"])

    def wants_reasoning(self, body: dict[str, Any], model: str) -> bool:
        name = model.lower()
        thinking = body.get("thinking")
        return (
            "r1" in name
            or "reasoner" in name
            or (isinstance(thinking, dict) and thinking.get("type") == "enabled")
        )

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        return count_words(body["messages"])

    def completion_body(self, reply: Reply) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(reply.content)}
        if reply.reasoning:
            message["reasoning_content"] = "".join(reply.reasoning)
        if reply.tool_call is not None:
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": f"call_{secrets.token_hex(12)}",
                    "type": "function",
                    "function": {
                        "name": reply.tool_call.name,
                        "arguments": reply.tool_call.arguments,
                    },
                }
            ]
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": "stop" if reply.tool_call is None else "tool_calls",
        }
        return orjson.dumps(
            {
                "id": reply.id,
                "object": "chat.completion",
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
            "object": "chat.completion.chunk",
            "created": reply.created,
            "model": reply.model,
        }
        if include_usage:  # like OpenAI: every chunk says `usage: null` until the last one
            base["usage"] = None

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return data_event({**base, "choices": [choice]})

        call = reply.tool_call
        yield Frame(chunk({"role": "assistant", "content": "" if call is None else None}))
        for piece in reply.reasoning:
            yield Frame(chunk({"reasoning_content": piece}), token=True)
        if call is not None:
            function = {"name": call.name, "arguments": ""}
            header = {"index": 0, "id": f"call_{secrets.token_hex(12)}", "type": "function"}
            yield Frame(chunk({"tool_calls": [{**header, "function": function}]}))
            for piece in reply.tool_fragments:
                fragment = {"index": 0, "function": {"arguments": piece}}
                yield Frame(chunk({"tool_calls": [fragment]}), token=True)
        for piece in reply.content:
            yield Frame(chunk({"content": piece}), token=True)
        yield Frame(chunk({}, "stop" if call is None else "tool_calls"))
        if include_usage:
            yield Frame(data_event({**base, "choices": [], "usage": usage_of(reply)}))
        yield DONE
