"""Endpoints that take files: a put carries them as multipart parts, as ids of files
uploaded before, or as base64; the worker sends a real multipart form upstream with each
file's name and content type; the SDKs' own multipart calls work through the front door."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx
import openai
import orjson
import pytest
from arq.worker import Worker

from queue_service.endpoints import MB
from tests.helpers import put, wait_view
from tests.servers import CallbackReceiver

AUDIO = b"RIFF" + bytes(range(256)) * 40  # not real audio: the mock reads names and sizes
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 300


def job(
    endpoint: str, data: dict[str, Any], mode: str = "blocking", url: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"queue": "files", "endpoint": endpoint, "level": 0, "data": data}
    body["response_mode"] = mode
    if url is not None:
        body["callback_url"] = url
        body["level"] = 1
    return body


def sent(mock_upstream: tuple[str, Any], path: str) -> dict[str, Any]:
    """What the mock upstream received last at `path` (fields; files as name/type/size)."""
    requests = [r for r in mock_upstream[1].state.mock_requests if r.path == path]
    body: dict[str, Any] = requests[-1].body
    return body


async def test_a_multipart_put_transcribes_the_file_it_carries(
    api: httpx.AsyncClient, worker: Worker, mock_upstream: tuple[str, Any]
) -> None:
    put_json = job("/v1/audio/transcriptions", {"model": "whisper-1", "language": "en"})
    response = await api.post(
        "/v1/queue/put",
        data={"job": json.dumps(put_json)},
        files={"file": ("talk.wav", AUDIO, "audio/wav")},
    )
    assert response.status_code == 200, response.text
    assert "talk.wav" in response.json()["text"]
    arrived = sent(mock_upstream, "/v1/audio/transcriptions")
    assert arrived["file"] == {
        "filename": "talk.wav",
        "content_type": "audio/wav",
        "bytes": len(AUDIO),
        "sha256": hashlib.sha256(AUDIO).hexdigest(),
    }
    assert (arrived["model"], arrived["language"]) == ("whisper-1", "en")


async def test_base64_in_data_and_a_text_answer_in_callback_mode(
    api: httpx.AsyncClient, worker: Worker, receiver: tuple[str, CallbackReceiver]
) -> None:
    url, inbox = receiver
    audio = {
        "$base64": base64.b64encode(AUDIO).decode(),
        "filename": "x.mp3",
        "content_type": "audio/mpeg",
    }
    data = {"model": "whisper-1", "file": audio, "response_format": "srt"}
    task_id = await put(api, job("/v1/audio/translations", data, mode="callback", url=url))
    (callback,) = await inbox.wait_for(1)
    assert callback["task_id"] == task_id
    assert callback["status"] == "succeeded"
    assert callback["body"].startswith("1\n00:00:00,000")  # text, not JSON
    assert "English rendering of x.mp3" in callback["body"]


async def test_files_uploaded_before_are_named_by_id_several_at_once(
    api: httpx.AsyncClient, worker: Worker, mock_upstream: tuple[str, Any]
) -> None:
    ids = []
    for name in ("a.png", "b.png", "mask.png"):
        uploaded = await api.post(
            "/v1/files",
            data={"purpose": "user_data"},
            files={"file": (name, PNG_BYTES, "image/png")},
        )
        ids.append(uploaded.json()["id"])
    data = {
        "prompt": "add a hat",
        "image": [{"$file": ids[0]}, {"$file": ids[1]}],
        "mask": {"$file": ids[2]},
        "n": 2,
        "response_format": "b64_json",
    }
    response = await api.post("/v1/queue/put", json=job("/v1/images/edits", data))
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 2
    arrived = sent(mock_upstream, "/v1/images/edits")
    assert [image["filename"] for image in arrived["image"]] == ["a.png", "b.png"]
    assert arrived["mask"]["content_type"] == "image/png"
    view = await wait_view(api, response.headers["x-task-id"], lambda v: v["status"] == "succeeded")
    assert view["endpoint"] == "/v1/images/edits"


async def test_the_sdks_multipart_calls_work_through_the_front_door(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    async with openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key="x") as sdk:
        transcript = await sdk.audio.transcriptions.create(
            model="whisper-1", file=("meeting.wav", AUDIO, "audio/wav")
        )
        assert "meeting.wav" in transcript.text
        subtitles = await sdk.audio.transcriptions.create(
            model="whisper-1", file=("meeting.wav", AUDIO), response_format="vtt"
        )
        assert str(subtitles).startswith("WEBVTT")
        variations = await sdk.images.create_variation(
            image=("cat.png", PNG_BYTES, "image/png"), n=3
        )
        assert len(variations.data or []) == 3


async def test_bad_file_inputs_are_refused_clearly(api: httpx.AsyncClient) -> None:
    missing = await api.post(
        "/v1/queue/put", json=job("/v1/audio/transcriptions", {"model": "whisper-1"})
    )
    assert missing.status_code == 400
    assert "needs a file" in missing.json()["message"]
    stranger = await api.post(
        "/v1/queue/put",
        json=job("/v1/audio/transcriptions", {"model": "w", "file": {"$file": "file-nope"}}),
    )
    assert stranger.status_code == 400
    assert "no file file-nope" in stranger.json()["message"]
    large = await api.post(
        "/v1/queue/put",
        data={"job": json.dumps(job("/v1/audio/transcriptions", {"model": "w"}))},
        files={"file": ("big.wav", b"\x00" * (25 * MB + 1), "audio/wav")},
    )
    assert large.status_code == 413
    not_base64 = await api.post(
        "/v1/queue/put",
        json=job("/v1/audio/transcriptions", {"model": "w", "file": {"$base64": "@@@"}}),
    )
    assert not_base64.status_code == 400


@pytest.mark.parametrize("endpoint", ["/v1/audio/transcriptions", "/v1/images/variations"])
async def test_a_streaming_put_of_a_file_endpoint_gets_the_answer_whole(
    api: httpx.AsyncClient, worker: Worker, endpoint: str
) -> None:
    field = "file" if "audio" in endpoint else "image"
    put_json = job(endpoint, {"model": "m"}, mode="streaming")
    response = await api.post(
        "/v1/queue/put", data={"job": json.dumps(put_json)}, files={field: ("f.bin", AUDIO)}
    )
    assert response.status_code == 200
    assert orjson.loads(response.content)


async def test_a_transcription_streams_for_the_models_that_stream(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    put_json = job("/v1/audio/transcriptions", {"model": "gpt-4o-transcribe"}, mode="streaming")
    async with api.stream(
        "POST",
        "/v1/queue/put",
        data={"job": json.dumps(put_json)},
        files={"file": ("talk.wav", AUDIO, "audio/wav")},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = (await response.aread()).decode()
        task_id = response.headers["x-task-id"]
    events = [orjson.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    deltas = "".join(e["delta"] for e in events if e["type"] == "transcript.text.delta")
    assert events[-1] == {"type": "transcript.text.done", "text": deltas}
    view = await wait_view(api, task_id, lambda v: v["status"] == "succeeded")
    assert view["result"] == {"text": deltas}  # the assembled answer is kept
    async with openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key="x") as sdk:
        stream = await sdk.audio.transcriptions.create(
            model="gpt-4o-transcribe", file=("talk.wav", AUDIO, "audio/wav"), stream=True
        )
        kinds = [event.type async for event in stream]
    assert kinds[-1] == "transcript.text.done"
    assert set(kinds[:-1]) == {"transcript.text.delta"}


async def test_a_jobs_files_together_are_bounded(api: httpx.AsyncClient) -> None:
    ids = []
    for n in range(3):  # 40 MB each: each within the image limit, 120 MB together
        uploaded = await api.post(
            "/v1/files",
            data={"purpose": "user_data"},
            files={"file": (f"{n}.png", b"\x00" * (40 * MB), "image/png")},
        )
        ids.append(uploaded.json()["id"])
    data = {"prompt": "p", "image": [{"$file": file_id} for file_id in ids]}
    response = await api.post("/v1/queue/put", json=job("/v1/images/edits", data))
    assert response.status_code == 413
    assert "files may total" in response.json()["message"]
