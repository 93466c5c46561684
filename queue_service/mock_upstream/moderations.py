"""OpenAI moderations: texts flagged by a few trigger words per category."""

from __future__ import annotations

from typing import Any

from .dialect import Answer, Call
from .oneshot import OneShot, json_answer, texts

_TRIGGERS: dict[str, tuple[str, ...]] = {
    "harassment": ("idiot", "loser"),
    "harassment/threatening": (),
    "hate": ("hate",),
    "hate/threatening": (),
    "illicit": ("steal",),
    "illicit/violent": (),
    "self-harm": ("hurt myself",),
    "self-harm/intent": (),
    "self-harm/instructions": (),
    "sexual": (),
    "sexual/minors": (),
    "violence": ("kill", "attack"),
    "violence/graphic": (),
}
"""Every category OpenAI's omni model reports, with the words that trigger it here."""
_FLAGGED_SCORE = 0.98
_CLEAN_SCORE = 0.0001


def moderate(text: str) -> dict[str, Any]:
    lowered = text.lower()
    categories = {name: any(word in lowered for word in words) for name, words in _TRIGGERS.items()}
    scores = {name: _FLAGGED_SCORE if hit else _CLEAN_SCORE for name, hit in categories.items()}
    return {
        "flagged": any(categories.values()),
        "categories": categories,
        "category_scores": scores,
    }


class ModerationsApi(OneShot):
    path = "/v1/moderations"
    id_prefix = "modr"

    def problem(self, body: dict[str, Any]) -> str | None:
        if texts(body.get("input")) is None:
            return "`input` must be a non-empty string or array of them (the mock reads text)."
        return None

    def answer(self, call: Call) -> Answer:
        results = [moderate(text) for text in texts(call.body["input"]) or []]
        return json_answer({"id": call.response_id, "model": call.model, "results": results})
