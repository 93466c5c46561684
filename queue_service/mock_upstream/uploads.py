"""OpenAI's endpoints that take files, as multipart forms: audio transcriptions and
translations (json, text, srt, vtt, verbose_json), image edits and variations. Each request
is recorded with its files' names, content types and sizes, so tests can see what arrived."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .images import colour_of, png
from .recording import MockState, RecordedRequest

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")


def _error(status: int, message: str) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None}}
    return Response(orjson.dumps(body), status, media_type="application/json")


async def _described(form: FormData) -> dict[str, Any]:
    """The form as recorded: fields as text, files as {filename, content_type, bytes, sha256}."""
    described: dict[str, Any] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read()
            item: Any = {
                "filename": value.filename,
                "content_type": value.content_type,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        else:
            item = value
        if name in described:
            existing = described[name]
            described[name] = [*existing, item] if isinstance(existing, list) else [existing, item]
        else:
            described[name] = item
    return described


def _transcript(fields: dict[str, Any], translate: bool) -> tuple[bytes, str]:
    upload = fields["file"]
    words = "This is the mock's English rendering" if translate else "This is the mock's transcript"
    text = f"{words} of {upload['filename']} ({upload['bytes']} bytes)."
    kind = fields.get("response_format", "json")
    if kind == "text":
        return text.encode(), "text/plain; charset=utf-8"
    if kind == "srt":
        return f"1\n00:00:00,000 --> 00:00:02,000\n{text}\n".encode(), "text/plain; charset=utf-8"
    if kind == "vtt":
        return f"WEBVTT\n\n00:00:00.000 --> 00:00:02.000\n{text}\n".encode(), "text/plain"
    if kind == "verbose_json":
        segment = {"id": 0, "start": 0.0, "end": 2.0, "text": text}
        body = {"task": "transcribe", "language": "english", "duration": 2.0, "text": text}
        return orjson.dumps(body | {"segments": [segment]}), "application/json"
    return orjson.dumps({"text": text}), "application/json"


STREAMING_MODELS = ("gpt-4o-transcribe", "gpt-4o-mini-transcribe")
"""The transcription models that stream (`stream=true`); whisper-1 answers whole."""


def _transcript_events(fields: dict[str, Any]) -> bytes:
    """A streamed transcript: a `transcript.text.delta` event per word, then `.done`."""
    text = orjson.loads(_transcript(fields | {"response_format": "json"}, False)[0])["text"]
    words = text.split(" ")
    events = [
        {"type": "transcript.text.delta", "delta": word if i == 0 else " " + word}
        for i, word in enumerate(words)
    ]
    events.append({"type": "transcript.text.done", "text": text})
    return b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in events)


def _images(fields: dict[str, Any], request: Request) -> bytes:
    seed = str(fields.get("prompt", "variation"))
    inline = fields.get("response_format", "url") == "b64_json"
    data = []
    for index in range(int(fields.get("n", 1))):
        colour = colour_of(seed, index)
        if inline:
            data.append({"b64_json": base64.b64encode(png(colour)).decode()})
        else:
            data.append({"url": f"{request.base_url}_mock/images/{colour}.png"})
    return orjson.dumps({"created": int(time.time()), "data": data})


def upload_routes(state: MockState) -> list[Route]:
    def endpoint(path: str, answer: Callable[[dict[str, Any], Request], Response | None]) -> Route:
        async def handle(request: Request) -> Response:
            if not request.headers.get("content-type", "").startswith("multipart/form-data"):
                return _error(400, f"{path} takes multipart/form-data")
            async with request.form(max_files=20, max_fields=50) as form:
                fields = await _described(form)
            state.requests.append(
                RecordedRequest(
                    path,
                    {k.lower(): v for k, v in request.headers.items()},
                    fields,
                    time.time(),
                    "upl-" + secrets.token_hex(8),
                )
            )
            return answer(fields, request) or _error(400, "bad request")

        return Route(path, handle, methods=["POST"])

    def audio(translate: bool) -> Callable[[dict[str, Any], Request], Response | None]:
        def answer(fields: dict[str, Any], request: Request) -> Response | None:
            if not isinstance(fields.get("file"), dict) or not fields.get("model"):
                return _error(400, "`file` (a file) and `model` are required")
            if fields.get("response_format", "json") not in FORMATS:
                return _error(400, f"`response_format` must be one of {', '.join(FORMATS)}")
            streams = str(fields["model"]).startswith(STREAMING_MODELS)
            if fields.get("stream") == "true" and streams and not translate:
                return Response(_transcript_events(fields), media_type="text/event-stream")
            body, kind = _transcript(fields, translate)
            return Response(body, media_type=kind)

        return answer

    def images(needs_prompt: bool) -> Callable[[dict[str, Any], Request], Response | None]:
        def answer(fields: dict[str, Any], request: Request) -> Response | None:
            image = fields.get("image") or fields.get("image[]")
            if not image:
                return _error(400, "`image` (one or several files) is required")
            if needs_prompt and not fields.get("prompt"):
                return _error(400, "`prompt` is required")
            return Response(_images(fields, request), media_type="application/json")

        return answer

    return [
        endpoint("/v1/audio/transcriptions", audio(translate=False)),
        endpoint("/v1/audio/translations", audio(translate=True)),
        endpoint("/v1/images/edits", images(needs_prompt=True)),
        endpoint("/v1/images/variations", images(needs_prompt=False)),
    ]
