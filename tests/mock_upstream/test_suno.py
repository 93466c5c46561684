"""The mock's Suno API: submits, clips streaming then complete, batch reads, refusals."""

from __future__ import annotations

import re
from typing import Any

import pytest

from . import (
    CLIP_FIELDS,
    LYRICS,
    METADATA_FIELDS,
    MUSIC,
    SUNO_FETCH,
    SUNO_FIELDS,
    Mock,
    in_order,
)


async def test_music_streams_then_completes(mock: Mock) -> None:
    body = {
        "prompt": "[Verse]\nWalking down the streets",
        "tags": "emotional punk",
        "mv": "chirp-v4",
        "title": "City Lights",
        "notify_hook": "http://example.invalid/hook",
    }
    answer = await mock.submit(MUSIC, body, duration=0.5, steps=2)
    assert (answer["code"], answer["message"]) == ("success", "")
    task_id = answer["data"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", task_id)

    seen = await mock.follow(f"{SUNO_FETCH}/{task_id}", key="data")
    assert all(set(task) == SUNO_FIELDS for task in seen)
    assert in_order([task["status"] for task in seen])
    for task in seen:
        assert len(task["data"]) == 2
        assert all(set(clip) == CLIP_FIELDS for clip in task["data"])
        assert all(set(clip["metadata"]) == METADATA_FIELDS for clip in task["data"])
    expected = {"SUBMITTED": "submitted", "IN_PROGRESS": "streaming", "SUCCESS": "complete"}
    for task in seen:
        assert {clip["status"] for clip in task["data"]} == {expected[task["status"]]}
        linked = task["status"] != "SUBMITTED"
        assert all(bool(clip["audio_url"]) == linked for clip in task["data"])
        assert all(bool(clip["image_url"]) == linked for clip in task["data"])
    streaming = [task for task in seen if task["status"] == "IN_PROGRESS"]
    assert streaming, [task["status"] for task in seen]
    assert all(task["progress"] == "50%" and task["finish_time"] == 0 for task in streaming)

    final = seen[-1]
    assert (final["status"], final["progress"], final["fail_reason"]) == ("SUCCESS", "100%", "")
    assert (final["action"], final["notify_hook"]) == ("MUSIC", body["notify_hook"])
    assert 0 < final["submit_time"] <= final["start_time"] <= final["finish_time"]
    first, second = final["data"]
    assert first["id"] != second["id"]
    assert (first["title"], first["model_name"], first["major_model_version"]) == (
        "City Lights",
        "chirp-v4",
        "v4",
    )
    assert first["metadata"]["tags"] == "emotional punk"
    assert first["metadata"]["prompt"] == body["prompt"]
    assert first["metadata"]["duration"] == 2.0
    assert first["metadata"]["error_message"] is None
    audio = await mock.client.get(first["audio_url"])
    assert audio.headers["content-type"] == "audio/mpeg"
    assert (await mock.client.get(first["image_url"])).headers["content-type"] == "image/png"


async def test_lyrics_are_written_at_the_end(mock: Mock) -> None:
    task_id = (await mock.submit(LYRICS, {"prompt": "dance"}, duration=0.3))["data"]
    seen = await mock.follow(f"{SUNO_FETCH}/{task_id}", key="data")
    for task in seen[:-1]:
        assert task["data"]["text"] == ""
        assert task["data"]["status"] in ("submitted", "streaming")
    final = seen[-1]
    assert (final["action"], final["status"]) == ("LYRICS", "SUCCESS")
    lyrics = final["data"]
    assert set(lyrics) == {"id", "text", "title", "status"}
    assert (lyrics["id"], lyrics["title"], lyrics["status"]) == (task_id, "Dance", "complete")
    assert "dance" in lyrics["text"]


@pytest.mark.parametrize("path", [MUSIC, LYRICS])
async def test_a_failing_suno_task_ends_in_failure(mock: Mock, path: str) -> None:
    task_id = (await mock.submit(path, {"prompt": "x"}, duration=0.2, fail="moderation"))["data"]
    final = (await mock.follow(f"{SUNO_FETCH}/{task_id}", key="data"))[-1]
    assert (final["status"], final["fail_reason"], final["progress"]) == (
        "FAILURE",
        "moderation",
        "100%",
    )
    if path == LYRICS:
        assert (final["data"]["status"], final["data"]["text"]) == ("error", "")
    else:
        assert {clip["status"] for clip in final["data"]} == {"error"}
        assert {clip["metadata"]["error_message"] for clip in final["data"]} == {"moderation"}


async def test_a_suno_refusal_creates_no_task(mock: Mock) -> None:
    answer = await mock.submit(MUSIC, {"prompt": "x"}, submit_code="insufficient_quota")
    assert answer == {"code": "insufficient_quota", "message": "mock refusal", "data": None}
    assert mock.suno_tasks == {}
    assert (await mock.submit(MUSIC, {"prompt": "x"}, submit_code="success"))["code"] == "success"


@pytest.mark.parametrize(
    ("path", "body", "action", "clips"),
    [
        (MUSIC, {"gpt_description_prompt": "miku dance"}, "MUSIC", 2),
        ("/suno/submit/concat", {"clip_id": "c-1", "is_infill": False}, "CONCAT", 1),
        ("/suno/uploads/audio-url", {"url": "http://cdn.example.invalid/a/b.mp3"}, "UPLOAD", 1),
    ],
)
async def test_every_suno_submit_creates_its_kind_of_task(
    mock: Mock, path: str, body: dict[str, Any], action: str, clips: int
) -> None:
    task_id = (await mock.submit(path, body, duration=0))["data"]
    task = (await mock.client.get(f"{SUNO_FETCH}/{task_id}")).json()["data"]
    assert (task["action"], task["status"], len(task["data"])) == (action, "SUCCESS", clips)
    if "gpt_description_prompt" in body:
        metadata = task["data"][0]["metadata"]
        assert metadata["gpt_description_prompt"] == "miku dance"
        assert "miku dance" in metadata["prompt"]


@pytest.mark.parametrize(
    ("path", "body", "named"),
    [
        (MUSIC, {"tags": "pop", "title": "t"}, "gpt_description_prompt"),
        (LYRICS, {}, "prompt"),
        ("/suno/submit/concat", {"is_infill": False}, "clip_id"),
        ("/suno/uploads/audio-url", {"url": ""}, "url"),
    ],
)
async def test_a_suno_submit_missing_a_field_is_400(
    mock: Mock, path: str, body: dict[str, Any], named: str
) -> None:
    assert named in await mock.bad_request(path, body)


async def test_suno_fetch_answers_many_tasks_in_one_request(mock: Mock) -> None:
    ids = [(await mock.submit(MUSIC, {"prompt": f"p{n}"}, duration=0))["data"] for n in range(25)]
    asked = [*reversed(ids), "not-a-task"]
    response = await mock.client.post(SUNO_FETCH, json={"ids": asked, "action": "MUSIC"})
    assert response.status_code == 200
    answer = response.json()
    assert (answer["code"], answer["message"]) == ("success", "")
    assert [task["task_id"] for task in answer["data"]] == list(reversed(ids))
    assert (mock.paths().count(MUSIC), mock.paths().count(SUNO_FETCH)) == (25, 1)
    assert (await mock.client.post(SUNO_FETCH, json={"ids": [1]})).status_code == 400


async def test_suno_unknown_task_is_404(mock: Mock) -> None:
    response = await mock.client.get(f"{SUNO_FETCH}/no-such-task")
    assert response.status_code == 404
    assert response.json() == {"code": "error", "message": "task not found", "data": None}
