"""The usage parser: each API's `usage` shape, and bodies that report none or nonsense."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from workers.usage import MOST_TOKENS, Usage, usage_of

JSON = "application/json"


def answer(usage: Any) -> bytes:
    return orjson.dumps({"id": "x", "usage": usage})


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param(
            {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42},
            Usage(12, 30, 0),
            id="openai chat",
        ),
        pytest.param(
            {
                "prompt_tokens": 12,
                "completion_tokens": 30,
                "prompt_tokens_details": {"cached_tokens": 8},
                "completion_tokens_details": {"reasoning_tokens": 25},
            },
            Usage(12, 30, 25),
            id="openai and deepseek reasoning (cached tokens are part of the prompt already)",
        ),
        pytest.param(
            {"prompt_tokens": 7, "total_tokens": 7}, Usage(7, 0, 0), id="openai embeddings"
        ),
        pytest.param({"total_tokens": 55}, Usage(55, 0, 0), id="jina rerank: all input"),
        pytest.param(
            {"input_tokens": 10, "output_tokens": 20}, Usage(10, 20, 0), id="anthropic messages"
        ),
        pytest.param(
            {
                "input_tokens": 10,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 1000,
                "output_tokens": 20,
            },
            Usage(1110, 20, 0),
            id="anthropic cache tokens count as prompt",
        ),
        pytest.param(
            {
                "input_tokens": 9,
                "output_tokens": 40,
                "output_tokens_details": {"reasoning_tokens": 32},
                "input_tokens_details": {"cached_tokens": 0},
            },
            Usage(9, 40, 32),
            id="openai responses and gpt-image",
        ),
    ],
)
def test_each_api_shape(usage: dict[str, Any], expected: Usage) -> None:
    assert usage_of(answer(usage), JSON) == expected


def test_any_json_content_type_is_read() -> None:
    body = answer({"prompt_tokens": 1, "completion_tokens": 2})
    assert usage_of(body, "application/json; charset=utf-8") == Usage(1, 2, 0)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"", JSON, id="empty"),
        pytest.param(b"{not json", JSON, id="broken json"),
        pytest.param(b"<html>502 Bad Gateway</html>", "text/html", id="html"),
        pytest.param(answer({"prompt_tokens": 1}), "audio/mpeg", id="not json by its type"),
        pytest.param(b"[1, 2]", JSON, id="a list"),
        pytest.param(b'"usage"', JSON, id="a string"),
        pytest.param(orjson.dumps({"data": []}), JSON, id="no usage"),
        pytest.param(answer(None), JSON, id="usage null, as streamed chunks say"),
        pytest.param(answer([1, 2]), JSON, id="usage a list"),
        pytest.param(answer({}), JSON, id="usage empty"),
        pytest.param(answer({"type": "duration", "seconds": 3}), JSON, id="audio seconds"),
        pytest.param(answer({"prompt_tokens": "12"}), JSON, id="a count as text"),
        pytest.param(answer({"prompt_tokens": True}), JSON, id="a count as a boolean"),
        pytest.param(answer({"prompt_tokens": -5}), JSON, id="a negative count"),
        pytest.param(answer({"prompt_tokens": MOST_TOKENS + 1}), JSON, id="an absurd count"),
        pytest.param(answer({"prompt_tokens": 1.5}), JSON, id="a fraction"),
        pytest.param(b'{"usage": {"prompt_tokens": 1' + b"0" * 30 + b"}}", JSON, id="huge int"),
        pytest.param(b'{"usage": ' * 5000 + b"1" + b"}" * 5000, JSON, id="nested too deep"),
    ],
)
def test_odd_bodies_report_no_usage(body: bytes, content_type: str) -> None:
    assert usage_of(body, content_type) is None


def test_odd_parts_are_ignored_and_the_sane_ones_kept() -> None:
    usage = {
        "prompt_tokens": 4,
        "completion_tokens": "many",
        "completion_tokens_details": {"reasoning_tokens": -1},
    }
    assert usage_of(answer(usage), JSON) == Usage(4, 0, 0)
    details_not_an_object = {"input_tokens": 3, "output_tokens": 5, "output_tokens_details": 7}
    assert usage_of(answer(details_not_an_object), JSON) == Usage(3, 5, 0)
