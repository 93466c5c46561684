"""Anthropic Messages API: message bodies, stream events and errors."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from starlette.responses import Response

from .controls import MockControls
from .dialect import conversation_problem
from .reply import Reply, content_text, count_words, last_user_text
from .streaming import Frame

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_SIGNATURE = "mock-signature"


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _error(status: int, message: str) -> dict[str, Any]:
    default = "api_error" if status >= 500 else "invalid_request_error"
    return {
        "type": "error",
        "error": {"type": _ERROR_TYPES.get(status, default), "message": message},
    }


def _block_delta(index: int, delta: dict[str, Any]) -> bytes:
    return _event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


def _stop_reason(reply: Reply) -> str:
    return "end_turn" if reply.tool_call is None else "tool_use"


_PING = Frame(_event("ping", {"type": "ping"}))
_STOP = Frame(_event("message_stop", {"type": "message_stop"}))


def _blocks(reply: Reply) -> list[tuple[dict[str, Any], str, str, list[str]]]:
    """Each content block as (empty start block, delta type, delta field, streamed pieces)."""
    blocks: list[tuple[dict[str, Any], str, str, list[str]]] = []
    if reply.reasoning:
        start: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
        blocks.append((start, "thinking_delta", "thinking", reply.reasoning))
    if reply.tool_call is None:
        blocks.append(({"type": "text", "text": ""}, "text_delta", "text", reply.content))
    else:
        start = {
            "type": "tool_use",
            "id": f"toolu_{secrets.token_hex(12)}",
            "name": reply.tool_call.name,
            "input": {},
        }
        blocks.append((start, "input_json_delta", "partial_json", reply.tool_fragments))
    return blocks


class AnthropicDialect:
    stream_error = _event("error", _error(529, "Overloaded"))

    def new_id(self) -> str:
        return f"msg_{secrets.token_hex(12)}"

    def authorized(self, headers: Mapping[str, str], api_key: str) -> bool:
        return headers.get("x-api-key") == api_key

    def error_response(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        return Response(orjson.dumps(_error(status, message)), status, headers, "application/json")

    def check(self, body: dict[str, Any], controls: MockControls) -> str | None:
        return conversation_problem(body, controls)

    def user_text(self, body: dict[str, Any]) -> str:
        return last_user_text(body["messages"])

    def wants_reasoning(self, body: dict[str, Any], model: str) -> bool:
        thinking = body.get("thinking")
        return isinstance(thinking, dict) and thinking.get("type") == "enabled"

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        system = content_text(body.get("system"))
        return count_words(body["messages"]) + len(system.split())

    def completion_body(self, reply: Reply) -> bytes:
        content: list[dict[str, Any]] = []
        if reply.reasoning:
            thinking = "".join(reply.reasoning)
            content.append({"type": "thinking", "thinking": thinking, "signature": _SIGNATURE})
        if reply.tool_call is None:
            content.append({"type": "text", "text": "".join(reply.content)})
        else:
            call = reply.tool_call
            content.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_{secrets.token_hex(12)}",
                    "name": call.name,
                    "input": orjson.loads(call.arguments),
                }
            )
        return orjson.dumps(
            {
                "id": reply.id,
                "type": "message",
                "role": "assistant",
                "model": reply.model,
                "content": content,
                "stop_reason": _stop_reason(reply),
                "stop_sequence": None,
                "usage": {
                    "input_tokens": reply.prompt_tokens,
                    "output_tokens": reply.completion_tokens,
                },
            }
        )

    def stream_frames(self, reply: Reply, body: dict[str, Any]) -> Iterator[Frame]:
        message: dict[str, Any] = {
            "id": reply.id,
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": 1},
        }
        yield Frame(_event("message_start", {"type": "message_start", "message": message}))
        for index, (start, delta_type, field, pieces) in enumerate(_blocks(reply)):
            block_start = {"type": "content_block_start", "index": index, "content_block": start}
            yield Frame(_event("content_block_start", block_start))
            if index == 0:
                yield _PING
            for piece in pieces:
                yield Frame(_block_delta(index, {"type": delta_type, field: piece}), token=True)
            if start["type"] == "thinking":
                signature = {"type": "signature_delta", "signature": _SIGNATURE}
                yield Frame(_block_delta(index, signature))
            block_stop = {"type": "content_block_stop", "index": index}
            yield Frame(_event("content_block_stop", block_stop))
        message_delta = {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
            "usage": {"output_tokens": reply.completion_tokens},
        }
        yield Frame(_event("message_delta", message_delta))
        yield _STOP
