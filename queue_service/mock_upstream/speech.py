"""OpenAI text to speech: silent audio as long as reading the input would take."""

from __future__ import annotations

import io
import math
import wave
from typing import Any

from .dialect import Answer, Call
from .oneshot import OneShot

SECONDS_PER_WORD = 0.1
PCM_RATE = 24_000
"""OpenAI's `pcm` and `wav`: 24 kHz, 16-bit signed little-endian, mono."""
_MP3_FRAME = b"\xff\xfb\x90\xc0" + bytes(413)
"""One silent MPEG-1 Layer III frame: 128 kbit/s, 44.1 kHz, mono, 417 bytes, 1152 samples."""
_MP3_FRAME_SECONDS = 1152 / 44_100
CONTENT_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "pcm": "audio/pcm"}
"""The formats the mock renders (OpenAI also has opus, aac and flac)."""


def _pcm(seconds: float) -> bytes:
    return bytes(2 * round(seconds * PCM_RATE))


def render(fmt: str, seconds: float) -> bytes:
    if fmt == "mp3":
        return _MP3_FRAME * max(math.ceil(seconds / _MP3_FRAME_SECONDS), 1)
    if fmt == "pcm":
        return _pcm(seconds)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(PCM_RATE)
        audio.writeframes(_pcm(seconds))
    return buffer.getvalue()


class SpeechApi(OneShot):
    path = "/v1/audio/speech"
    id_prefix = "speech"

    def problem(self, body: dict[str, Any]) -> str | None:
        for name in ("input", "voice"):
            if not isinstance(body.get(name), str) or not body[name]:
                return f"`{name}` must be a non-empty string."
        if body.get("response_format", "mp3") not in CONTENT_TYPES:
            return f"`response_format` must be one of {', '.join(CONTENT_TYPES)} (in the mock)."
        speed = body.get("speed", 1.0)
        if not isinstance(speed, int | float) or isinstance(speed, bool) or not 0.25 <= speed <= 4:
            return "`speed` must be a number from 0.25 to 4."
        return None

    def answer(self, call: Call) -> Answer:
        fmt = call.body.get("response_format", "mp3")
        words = max(len(call.body["input"].split()), 1)
        seconds = words * SECONDS_PER_WORD / call.body.get("speed", 1.0)
        return Answer(render(fmt, seconds), CONTENT_TYPES[fmt])
