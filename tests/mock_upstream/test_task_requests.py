"""What every task-API request goes through: auth, controls, injected failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from queue_service.mock_upstream import MockConfig

from . import (
    IMAGINE,
    LIST,
    MUSIC,
    SUNO_FETCH,
    UPLOAD,
    Mock,
    running,
)

REQUESTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", IMAGINE, {"prompt": "p"}),
    ("POST", UPLOAD, {"base64Array": []}),
    ("POST", LIST, {"ids": []}),
    ("GET", "/mj/task/1/fetch", None),
    ("GET", "/mj/task/1/image-seed", None),
    ("POST", MUSIC, {"prompt": "p"}),
    ("POST", SUNO_FETCH, {"ids": []}),
    ("GET", f"{SUNO_FETCH}/1", None),
]


async def test_a_wrong_key_is_401() -> None:
    async with running(MockConfig(api_key="sekret")) as mock:
        for method, path, body in REQUESTS:
            for headers in ({}, {"Authorization": "Bearer other"}, {"Authorization": "sekret"}):
                response = await mock.client.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (path, headers)
                error = response.json()
                if path.startswith("/mj/"):
                    assert (error["code"], error["result"]) == (401, None)
                else:
                    assert (error["code"], error["data"]) == ("error", None)
            good = {"Authorization": "Bearer sekret"}
            response = await mock.client.request(method, path, json=body, headers=good)
            assert response.status_code in (200, 404), path
        assert len(mock.paths()) == 4 * len(REQUESTS)
        assert mock.mj_tasks
        assert mock.suno_tasks


@pytest.mark.parametrize(
    ("path", "controls", "named"),
    [
        (IMAGINE, {"bogus": 1}, "bogus"),
        (IMAGINE, {"duration": -1}, "duration"),
        (IMAGINE, {"steps": 0}, "steps"),
        (IMAGINE, {"queued": "soon"}, "queued"),
        (IMAGINE, {"submit_code": "23"}, "submit_code"),
        (IMAGINE, {"retry_after": 1}, "retry_after"),
        (MUSIC, {"submit_code": 500}, "submit_code"),
        (MUSIC, {"fail": ""}, "fail"),
        (MUSIC, {"status": 200}, "status"),
        (MUSIC, ["not", "an", "object"], "mock"),
    ],
)
async def test_invalid_controls_are_400(mock: Mock, path: str, controls: Any, named: str) -> None:
    message = await mock.bad_request(path, {"prompt": "p", "mock": controls})
    assert message.startswith("Invalid mock controls")
    assert named in message


@pytest.mark.parametrize("path", [IMAGINE, MUSIC])
async def test_a_status_control_answers_that_error_first(mock: Mock, path: str) -> None:
    controls = {"status": 503, "retry_after": 2, "fail_times": 2, "key": path}
    body = {"mock": controls}  # an invalid body: the error comes before it is looked at
    for _ in range(2):
        response = await mock.client.post(path, json=body)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
    assert mock.mj_tasks == mock.suno_tasks == {}
    response = await mock.client.post(path, json={"prompt": "p", "mock": controls})
    assert response.status_code == 200
    assert mock.app.state.mock_fail_counts == {path: 2}
    assert mock.paths().count(path) == 3


@pytest.mark.parametrize(
    ("submit", "read", "single"),
    [(IMAGINE, LIST, "/mj/task/{}/fetch"), (MUSIC, SUNO_FETCH, f"{SUNO_FETCH}/{{}}")],
)
async def test_a_task_can_ask_its_reads_to_fail(
    mock: Mock, submit: str, read: str, single: str
) -> None:
    """`read_status` fails every read naming the task (the whole batch), `read_fail_times`
    only the first ones; other tasks' reads are not touched."""
    failing = await mock.submit(submit, {"prompt": "p"}, read_status=502, read_fail_times=2)
    healthy = await mock.submit(submit, {"prompt": "p"})
    key = "result" if submit == IMAGINE else "data"
    failing_id, healthy_id = failing[key], healthy[key]
    both = await mock.client.post(read, json={"ids": [healthy_id, failing_id]})
    assert both.status_code == 502
    alone = await mock.client.get(single.format(failing_id))
    assert alone.status_code == 502
    assert (await mock.client.post(read, json={"ids": [healthy_id]})).status_code == 200
    assert (await mock.client.post(read, json={"ids": [failing_id]})).status_code == 200


@pytest.mark.parametrize(
    ("submit", "read", "single"),
    [(IMAGINE, LIST, "/mj/task/{}/fetch"), (MUSIC, SUNO_FETCH, f"{SUNO_FETCH}/{{}}")],
)
async def test_a_task_can_be_forgotten_by_the_upstream(
    mock: Mock, submit: str, read: str, single: str
) -> None:
    key = "result" if submit == IMAGINE else "data"
    kept = (await mock.submit(submit, {"prompt": "p"}))[key]
    forgotten = (await mock.submit(submit, {"prompt": "p"}, forget_after=0))[key]
    answer = (await mock.client.post(read, json={"ids": [kept, forgotten]})).json()
    tasks = answer if submit == IMAGINE else answer["data"]
    assert [task["id" if submit == IMAGINE else "task_id"] for task in tasks] == [kept]
    assert (await mock.client.get(single.format(forgotten))).status_code == 404
    assert (await mock.client.get(single.format(kept))).status_code == 200


async def test_a_read_can_be_slow(mock: Mock) -> None:
    slow = (await mock.submit(IMAGINE, {"prompt": "p"}, read_delay=0.3))["result"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await mock.client.post(LIST, json={"ids": [slow]})
    assert response.status_code == 200
    assert loop.time() - started >= 0.3


@pytest.mark.parametrize("path", [IMAGINE, MUSIC])
@pytest.mark.parametrize("answer", [{"result": "1"}, ["a", "list"], "text", {"code": 1}])
async def test_a_submit_can_answer_any_json(mock: Mock, path: str, answer: Any) -> None:
    response = await mock.client.post(path, json={"prompt": "p", "mock": {"submit_answer": answer}})
    assert (response.status_code, response.json()) == (200, answer)
    assert mock.mj_tasks == mock.suno_tasks == {}


async def test_a_submit_can_be_slow_and_still_create_its_task(mock: Mock) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await mock.submit(IMAGINE, {"prompt": "p"}, submit_delay=0.3)
    assert loop.time() - started >= 0.3
    assert answer["result"] in mock.mj_tasks


async def test_read_fail_times_needs_read_status(mock: Mock) -> None:
    message = await mock.bad_request(IMAGINE, {"prompt": "p", "mock": {"read_fail_times": 1}})
    assert "read_fail_times only makes sense with read_status" in message
