"""Embeddings (OpenAI) and rerank (Jina): deterministic answers computed from the text."""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from typing import Any

from .dialect import Answer, Call
from .oneshot import OneShot, json_answer, texts, word_count

DEFAULT_DIMENSIONS = 16
"""Far fewer than a real model's, so bodies stay small; `dimensions` asks for more."""
_WORD = re.compile(r"\w+")


def embed(text: str, dimensions: int) -> list[float]:
    """A unit vector drawn from a hash of `text`: the same text, the same vector."""
    raw = hashlib.shake_256(text.encode()).digest(4 * dimensions)
    values = [n / 2**31 - 1 for n in struct.unpack(f"<{dimensions}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def relevance(query: str, document: str) -> float:
    """The share of words the two have in common (Jaccard): predictable in tests."""
    mine, theirs = set(_WORD.findall(query.lower())), set(_WORD.findall(document.lower()))
    union = mine | theirs
    return len(mine & theirs) / len(union) if union else 0.0


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class EmbeddingsApi(OneShot):
    path = "/v1/embeddings"
    id_prefix = "emb"

    def problem(self, body: dict[str, Any]) -> str | None:
        if texts(body.get("input")) is None:
            return "`input` must be a non-empty string or array of them (no token arrays here)."
        if "dimensions" in body and not _positive_int(body["dimensions"]):
            return "`dimensions` must be a positive integer."
        if body.get("encoding_format", "float") not in ("float", "base64"):
            return "`encoding_format` must be float or base64."
        return None

    def answer(self, call: Call) -> Answer:
        inputs = texts(call.body["input"]) or []
        dimensions = call.body.get("dimensions", DEFAULT_DIMENSIONS)
        packed = call.body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector: Any = embed(text, dimensions)
            if packed:  # OpenAI's base64: little-endian float32s
                vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = word_count(inputs)
        return json_answer(
            {
                "object": "list",
                "data": data,
                "model": call.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def _document_text(document: Any) -> str | None:
    if isinstance(document, dict):
        document = document.get("text")
    return document if isinstance(document, str) else None


class RerankApi(OneShot):
    """Jina's rerank: `query`, `documents` (strings or `{"text"}`), `top_n`, `return_documents`."""

    path = "/v1/rerank"
    id_prefix = "rerank"

    def problem(self, body: dict[str, Any]) -> str | None:
        if not isinstance(body.get("query"), str) or not body["query"]:
            return "`query` must be a non-empty string."
        documents = body.get("documents")
        if not isinstance(documents, list) or not documents:
            return "`documents` must be a non-empty array."
        if any(_document_text(document) is None for document in documents):
            return '`documents` items must be strings or objects with a string "text".'
        if "top_n" in body and not _positive_int(body["top_n"]):
            return "`top_n` must be a positive integer."
        if not isinstance(body.get("return_documents", True), bool):
            return "`return_documents` must be a boolean."
        return None

    def answer(self, call: Call) -> Answer:
        query = call.body["query"]
        documents = [_document_text(d) or "" for d in call.body["documents"]]
        scores = [relevance(query, document) for document in documents]
        ranked = sorted(range(len(documents)), key=lambda index: -scores[index])
        results = []
        for index in ranked[: call.body.get("top_n", len(documents))]:
            result: dict[str, Any] = {"index": index, "relevance_score": scores[index]}
            if call.body.get("return_documents", True):
                result["document"] = {"text": documents[index]}
            results.append(result)
        tokens = word_count(documents) + len(query.split()) * len(documents)
        return json_answer(
            {"model": call.model, "usage": {"total_tokens": tokens}, "results": results}
        )
