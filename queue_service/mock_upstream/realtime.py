"""OpenAI realtime sessions: a JSON POST minting an ephemeral key (valid a minute) for a
WebSocket or WebRTC session the client then opens itself."""

from __future__ import annotations

import secrets
import time
from typing import Any

from .dialect import Answer, Call
from .oneshot import OneShot, json_answer

EPHEMERAL_KEY_S = 60


class RealtimeSessionsApi(OneShot):
    path = "/v1/realtime/sessions"
    id_prefix = "sess"

    def problem(self, body: dict[str, Any]) -> str | None:
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "`model` must name a realtime model."
        return None

    def answer(self, call: Call) -> Answer:
        expires = int(time.time()) + EPHEMERAL_KEY_S
        return json_answer(
            {
                "id": call.response_id,
                "object": "realtime.session",
                "model": call.model,
                "modalities": call.body.get("modalities", ["audio", "text"]),
                "voice": call.body.get("voice", "alloy"),
                "expires_at": expires,
                "client_secret": {"value": "ek_" + secrets.token_hex(16), "expires_at": expires},
            }
        )
