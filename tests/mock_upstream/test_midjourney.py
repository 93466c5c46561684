"""The mock's Midjourney-proxy API: submits, the task lifecycle, batch reads, refusals."""

from __future__ import annotations

import re
from typing import Any

import pytest

from queue_service.mock_upstream import MockConfig

from . import (
    IMAGINE,
    LIST,
    MJ_FIELDS,
    UPLOAD,
    Mock,
    in_order,
    running,
)


async def test_imagine_moves_through_progress_to_success_with_buttons(mock: Mock) -> None:
    answer = await mock.submit(IMAGINE, {"prompt": "a cat", "state": "mine"}, duration=0.5, steps=2)
    assert answer["code"] == 1
    assert answer["description"] == "Submit success"
    assert answer["properties"] == {}
    task_id = answer["result"]
    assert re.fullmatch(r"\d{16}", task_id)

    seen = await mock.follow(f"/mj/task/{task_id}/fetch")
    assert all(set(task) == MJ_FIELDS for task in seen)
    assert in_order([task["status"] for task in seen])
    for early in (task for task in seen if task["status"] == "SUBMITTED"):
        assert (early["progress"], early["imageUrl"], early["buttons"]) == ("0%", "", [])
    in_progress = [task for task in seen if task["status"] == "IN_PROGRESS"]
    assert in_progress, [task["status"] for task in seen]
    assert {task["progress"] for task in in_progress} == {"50%"}
    assert all(task["imageUrl"] and not task["buttons"] for task in in_progress)
    assert all(task["finishTime"] == 0 for task in in_progress)

    final = seen[-1]
    assert final["status"] == "SUCCESS"
    assert final["progress"] == "100%"
    assert final["action"] == "IMAGINE"
    assert (final["prompt"], final["promptEn"], final["state"]) == ("a cat", "a cat", "mine")
    assert final["description"] == "/imagine a cat"
    assert final["failReason"] == ""
    assert final["submitTime"] <= final["startTime"] < final["finishTime"]
    assert [button["label"] for button in final["buttons"]] == [
        "U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4",
    ]  # fmt: skip
    hashed = re.fullmatch(r"MJ::JOB::upsample::1::([0-9a-f-]{36})", final["buttons"][0]["customId"])
    assert hashed is not None
    assert [button["customId"] for button in final["buttons"]] == [
        f"MJ::JOB::{kind}::{n}::{hashed.group(1)}"
        for kind in ("upsample", "variation")
        for n in range(1, 5)
    ]
    assert all((b["emoji"], b["style"], b["type"]) == ("", 2, 2) for b in final["buttons"])
    assert final["imageUrl"] != in_progress[0]["imageUrl"]
    image = await mock.client.get(final["imageUrl"])
    assert image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")
    assert mock.paths().count(IMAGINE) == 1


async def test_a_failing_task_ends_in_failure_with_its_reason(mock: Mock) -> None:
    answer = await mock.submit(IMAGINE, {"prompt": "a dog"}, duration=0.2, fail="Banned prompt")
    seen = await mock.follow(f"/mj/task/{answer['result']}/fetch")
    final = seen[-1]
    assert final["status"] == "FAILURE"
    assert final["failReason"] == "Banned prompt"
    assert (final["progress"], final["imageUrl"], final["buttons"]) == ("100%", "", [])
    assert final["finishTime"] >= final["startTime"] > 0
    assert all(task["failReason"] == "" for task in seen[:-1])


@pytest.mark.parametrize(
    ("code", "description"),
    [
        (23, "队列已满，请稍后尝试"),
        (24, "可能包含敏感词"),
        (0, "提交失败"),
        (4, "参数错误"),
        (9, "系统异常，请稍后重试"),
        (77, "mock refusal"),
    ],
)
async def test_refusal_codes_create_no_task(mock: Mock, code: int, description: str) -> None:
    answer = await mock.submit(IMAGINE, {"prompt": "forbidden words"}, submit_code=code)
    assert answer["code"] == code
    assert answer["description"] == description
    assert answer["result"] is None
    assert mock.mj_tasks == {}
    if code == 24:
        assert answer["properties"]["promptEn"] == "forbidden words"


@pytest.mark.parametrize(
    ("code", "description"), [(21, "任务已存在"), (22, "排队中，前面还有1个任务")]
)
async def test_codes_21_and_22_give_a_task_to_follow(
    mock: Mock, code: int, description: str
) -> None:
    answer = await mock.submit(IMAGINE, {"prompt": "p"}, submit_code=code, duration=0.1)
    assert (answer["code"], answer["description"]) == (code, description)
    assert re.fullmatch(r"\d{16}", answer["result"])
    seen = await mock.follow(f"/mj/task/{answer['result']}/fetch")
    assert seen[-1]["status"] == "SUCCESS"


async def test_list_by_condition_answers_many_tasks_in_one_request(mock: Mock) -> None:
    ids = [
        (await mock.submit(IMAGINE, {"prompt": f"p{n}"}, duration=0 if n % 2 else 60))["result"]
        for n in range(40)
    ]
    asked = [*reversed(ids[:20]), "1234", *ids[20:], "0000000000000000"]
    response = await mock.client.post(LIST, json={"ids": asked})
    assert response.status_code == 200
    tasks = response.json()
    assert [task["id"] for task in tasks] == [one for one in asked if one in ids]
    assert all(set(task) == MJ_FIELDS for task in tasks)
    by_id = {task["id"]: task for task in tasks}
    assert by_id[ids[1]]["status"] == "SUCCESS"
    assert by_id[ids[0]]["status"] == "SUBMITTED"
    assert by_id[ids[0]]["prompt"] == "p0"
    assert (mock.paths().count(IMAGINE), mock.paths().count(LIST)) == (40, 1)
    assert (await mock.client.post(LIST, json={"ids": "nope"})).status_code == 400


async def test_unknown_task_is_404(mock: Mock) -> None:
    for url in ("/mj/task/1111222233334444/fetch", "/mj/task/1111222233334444/image-seed"):
        response = await mock.client.get(url)
        assert response.status_code == 404
        assert response.json() == {
            "code": 404,
            "description": "Task 1111222233334444 not found.",
            "result": None,
        }


async def test_image_seed_once_the_task_succeeded(mock: Mock) -> None:
    running_task = (await mock.submit(IMAGINE, {"prompt": "p"}, duration=60))["result"]
    early = (await mock.client.get(f"/mj/task/{running_task}/image-seed")).json()
    assert early["code"] == 4
    assert early["result"] is None
    assert "SUBMITTED" in early["description"]

    done = (await mock.submit(IMAGINE, {"prompt": "p"}, duration=0))["result"]
    seed = (await mock.client.get(f"/mj/task/{done}/image-seed")).json()
    assert (seed["code"], seed["description"]) == (1, "success")
    assert re.fullmatch(r"\d+", seed["result"])
    assert (await mock.client.get(f"/mj/task/{done}/image-seed")).json() == seed


async def test_upload_discord_images_answers_an_image_url_per_image(mock: Mock) -> None:
    images = ["data:image/png;base64,AAAA", "data:image/png;base64,BBBB", "data:image/png;base64,C"]
    answer = await mock.submit(UPLOAD, {"base64Array": images, "filter": {}})
    assert (answer["code"], answer["description"]) == (1, "success")
    assert len(answer["result"]) == 3
    assert len(set(answer["result"])) == 3
    for url in answer["result"]:
        assert (await mock.client.get(url)).headers["content-type"] == "image/png"
    assert mock.mj_tasks == {}
    assert (await mock.client.post(UPLOAD, json={"filter": {}})).status_code == 400


SUBMITS: list[tuple[str, dict[str, Any], str]] = [
    (IMAGINE, {"prompt": "Cat", "base64Array": []}, "IMAGINE"),
    ("/mj/submit/blend", {"base64Array": ["data:a", "data:b"], "dimensions": "SQUARE"}, "BLEND"),
    ("/mj/submit/describe", {"base64": "data:image/png;base64,xxx"}, "DESCRIBE"),
    ("/mj/submit/action", {"customId": "MJ::JOB::upsample::1::h", "taskId": "1"}, "UPSCALE"),
    ("/mj/submit/action", {"customId": "MJ::JOB::variation::2::h", "taskId": "1"}, "VARIATION"),
    ("/mj/submit/modal", {"maskBase64": "", "prompt": "", "taskId": "14001934816969359"}, "MODAL"),
    ("/mj/submit/shorten", {"prompt": "a very long prompt"}, "SHORTEN"),
    ("/mj/insight-face/swap", {"sourceBase64": "data:s", "targetBase64": "data:t"}, "SWAP_FACE"),
]


@pytest.mark.parametrize(("path", "body", "action"), SUBMITS)
async def test_every_submit_creates_its_kind_of_task(
    mock: Mock, path: str, body: dict[str, Any], action: str
) -> None:
    answer = await mock.submit(path, body, duration=0)
    task = (await mock.client.get(f"/mj/task/{answer['result']}/fetch")).json()
    assert (task["action"], task["status"]) == (action, "SUCCESS")


@pytest.mark.parametrize(
    ("path", "body", "named"),
    [
        (IMAGINE, {"prompt": ""}, "prompt"),
        ("/mj/submit/blend", {"base64Array": ["data:a"]}, "base64Array"),
        ("/mj/submit/describe", {}, "base64"),
        ("/mj/submit/action", {"customId": "MJ::JOB::upsample::1::h"}, "taskId"),
        ("/mj/submit/modal", {"prompt": "p"}, "taskId"),
        ("/mj/submit/shorten", {}, "prompt"),
        ("/mj/insight-face/swap", {"sourceBase64": "data:s"}, "targetBase64"),
    ],
)
async def test_a_submit_missing_a_field_is_400(
    mock: Mock, path: str, body: dict[str, Any], named: str
) -> None:
    assert named in await mock.bad_request(path, body)


async def test_an_action_inherits_the_prompt_of_its_task(mock: Mock) -> None:
    parent = (await mock.submit(IMAGINE, {"prompt": "a red fox"}, duration=0))["result"]
    button = (await mock.client.get(f"/mj/task/{parent}/fetch")).json()["buttons"][4]
    body = {"customId": button["customId"], "taskId": parent}
    child = (await mock.submit("/mj/submit/action", body, duration=0))["result"]
    task = (await mock.client.get(f"/mj/task/{child}/fetch")).json()
    assert (task["action"], task["prompt"]) == ("VARIATION", "a red fox")


async def test_a_queued_task_waits_not_started(mock: Mock) -> None:
    task_id = (await mock.submit(IMAGINE, {"prompt": "p"}, queued=60, duration=0))["result"]
    task = (await mock.client.get(f"/mj/task/{task_id}/fetch")).json()
    assert (task["status"], task["progress"], task["startTime"]) == ("NOT_START", "0%", 0)


async def test_the_config_gives_the_default_timing() -> None:
    async with running(MockConfig(task_duration=0)) as instant:
        task_id = (await instant.submit(IMAGINE, {"prompt": "p"}))["result"]
        assert (await instant.client.get(f"/mj/task/{task_id}/fetch")).json()["status"] == "SUCCESS"
    async with running() as slow:  # 2 s in 4 steps
        task_id = (await slow.submit(IMAGINE, {"prompt": "p"}))["result"]
        assert (await slow.client.get(f"/mj/task/{task_id}/fetch")).json()["status"] == "SUBMITTED"


async def test_end_status_must_be_modal_or_cancel(mock: Mock) -> None:
    body = {"prompt": "p", "mock": {"end_status": "SUCCESS"}}
    assert "end_status" in await mock.bad_request(IMAGINE, body)


@pytest.mark.parametrize("end", ["MODAL", "CANCEL"])
async def test_a_task_can_end_waiting_for_a_modal_or_cancelled(mock: Mock, end: str) -> None:
    answer = await mock.submit(IMAGINE, {"prompt": "p"}, duration=0.1, end_status=end)
    seen = await mock.follow(f"/mj/task/{answer['result']}/fetch", ended=("MODAL", "CANCEL"))
    assert seen[-1]["status"] == end
    assert seen[-1]["failReason"] == ""
