"""The `/v1/completions` stream assembler: chunks joined into one `text_completion`."""

from __future__ import annotations

from typing import Any

import orjson

from workers.adapters.openai_completions import CompletionsStreamAssembler
from workers.sse import SSEEvent, parse_event

HEAD = {"id": "cmpl-1", "object": "text_completion", "created": 7, "model": "instruct"}


def chunk(*choices: dict[str, Any], **extra: Any) -> SSEEvent:
    return parse_event(b"data: " + orjson.dumps({**HEAD, "choices": list(choices), **extra}))


def choice(index: int, text: str, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish, **extra}


def test_text_is_joined_per_choice_with_finish_reasons_and_usage() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assembler = CompletionsStreamAssembler()
    for event in [
        chunk(choice(0, "Once ")),
        chunk(choice(1, "In a ")),
        chunk(choice(0, "upon"), choice(1, "land")),
        chunk(choice(1, "", "length")),
        chunk(choice(0, "", "stop")),
        chunk(usage=usage),
        parse_event(b"data: [DONE]\n\n"),
    ]:
        assembler.feed(event)
    assert assembler.error() is None
    assert orjson.loads(assembler.result()) == {
        **HEAD,
        "choices": [choice(0, "Once upon", "stop"), choice(1, "In a land", "length")],
        "usage": usage,
    }


def test_logprobs_lists_are_extended() -> None:
    def logprobs(token: str, offset: int) -> dict[str, Any]:
        return {
            "tokens": [token],
            "token_logprobs": [-0.5],
            "top_logprobs": [{token: -0.5}],
            "text_offset": [offset],
        }

    assembler = CompletionsStreamAssembler()
    assembler.feed(chunk(choice(0, "a", logprobs=logprobs("a", 0))))
    assembler.feed(chunk(choice(0, "b", "stop", logprobs=logprobs("b", 1))))
    (joined,) = orjson.loads(assembler.result())["choices"]
    assert joined["text"] == "ab"
    assert joined["logprobs"] == {
        "tokens": ["a", "b"],
        "token_logprobs": [-0.5, -0.5],
        "top_logprobs": [{"a": -0.5}, {"b": -0.5}],
        "text_offset": [0, 1],
    }


def test_an_error_chunk_is_the_streams_error() -> None:
    assembler = CompletionsStreamAssembler()
    assembler.feed(chunk(choice(0, "partial")))
    assembler.feed(parse_event(b'data: {"error": {"message": "boom", "type": "server_error"}}'))
    assert assembler.error() == {"message": "boom", "type": "server_error"}
