"""The `/v1/messages` adapter's pieces: its headers and the stream assembler."""

from __future__ import annotations

from typing import Any

import orjson

from workers.adapters.anthropic_messages import MessagesStreamAssembler, anthropic_headers
from workers.adapters.base import Upstream
from workers.sse import SSEEvent, parse_event


def event(payload: dict[str, Any]) -> SSEEvent:
    return parse_event(
        b"event: %s\ndata: %s\n\n" % (payload["type"].encode(), orjson.dumps(payload))
    )


def start(index: int, block: dict[str, Any]) -> SSEEvent:
    return event({"type": "content_block_start", "index": index, "content_block": block})


def delta(index: int, kind: str, **fields: Any) -> SSEEvent:
    return event({"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}})


def stop(index: int) -> SSEEvent:
    return event({"type": "content_block_stop", "index": index})


MESSAGE_START = event(
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 0},
        },
    }
)


def assembled(*events: SSEEvent) -> Any:
    assembler = MessagesStreamAssembler()
    for each in events:
        assembler.feed(each)
    assert assembler.error() is None
    return orjson.loads(assembler.result())


def test_thinking_text_and_tool_use_are_rebuilt_into_the_message() -> None:
    message = assembled(
        MESSAGE_START,
        start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        event({"type": "ping"}),
        delta(0, "thinking_delta", thinking="Let me "),
        delta(0, "thinking_delta", thinking="check."),
        delta(0, "signature_delta", signature="sig-123"),
        stop(0),
        start(1, {"type": "text", "text": ""}),
        delta(1, "text_delta", text="Checking "),
        delta(1, "text_delta", text="the weather."),
        stop(1),
        start(2, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}),
        delta(2, "input_json_delta", partial_json=""),
        delta(2, "input_json_delta", partial_json='{"city": "Pa'),
        delta(2, "input_json_delta", partial_json='ris", "days": [1'),
        delta(2, "input_json_delta", partial_json=", 2]}"),
        stop(2),
        start(3, {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}),
        delta(3, "input_json_delta", partial_json=""),
        stop(3),
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 42},
            }
        ),
        event({"type": "message_stop"}),
    )
    assert message == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [
            {"type": "thinking", "thinking": "Let me check.", "signature": "sig-123"},
            {"type": "text", "text": "Checking the weather."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Paris", "days": [1, 2]},
            },
            {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 42, "cache_read_input_tokens": 0},
    }


def test_blocks_are_ordered_by_index_and_stop_sequence_is_kept() -> None:
    message = assembled(
        MESSAGE_START,
        start(1, {"type": "text", "text": ""}),
        start(0, {"type": "text", "text": "first"}),
        delta(1, "text_delta", text="second"),
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
                "usage": {"output_tokens": 2},
            }
        ),
    )
    assert [block["text"] for block in message["content"]] == ["first", "second"]
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "END")


def test_citations_are_collected_on_their_text_block() -> None:
    citation = {"type": "char_location", "cited_text": "Paris", "document_index": 0}
    message = assembled(
        MESSAGE_START,
        start(0, {"type": "text", "text": "", "citations": []}),
        delta(0, "citations_delta", citation=citation),
        delta(0, "text_delta", text="It is Paris."),
    )
    assert message["content"] == [{"type": "text", "text": "It is Paris.", "citations": [citation]}]


def test_a_cut_off_tool_input_is_kept_as_the_text_received() -> None:
    message = assembled(
        MESSAGE_START,
        start(0, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}),
        delta(0, "input_json_delta", partial_json='{"city": "Pa'),
    )
    assert message["content"][0]["input"] == '{"city": "Pa'


def test_an_error_event_is_the_streams_error() -> None:
    assembler = MessagesStreamAssembler()
    assembler.feed(MESSAGE_START)
    assert assembler.error() is None
    error = {"type": "overloaded_error", "message": "Overloaded"}
    assembler.feed(event({"type": "error", "error": error}))
    assert assembler.error() == error


def test_headers_carry_the_key_and_the_api_version() -> None:
    assert anthropic_headers(Upstream("http://u", "k")) == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": "k",
    }
    assert "x-api-key" not in anthropic_headers(Upstream("http://u"))
