"""`/v1/audio/speech`: JSON in, audio bytes out (OpenAI text to speech).

The answer is stored and passed on with the upstream's content type (`audio/mpeg`, ...): a
blocking client receives the audio as it is, callbacks and `GET` show it as base64.
"""

from __future__ import annotations

from typing import Any

from .json_endpoints import OneShotAdapter

AUDIO_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
"""`response_format` -> the content type of that audio."""


class SpeechAdapter(OneShotAdapter):
    def __init__(self) -> None:
        super().__init__("/v1/audio/speech")

    def default_type(self, data: dict[str, Any]) -> str:
        """Audio the upstream did not label is labelled by the format asked for (mp3 by
        default), never as JSON, which would have it decoded as text."""
        return AUDIO_TYPES.get(str(data.get("response_format", "mp3")), "application/octet-stream")
