"""What every task-API request goes through: auth, controls, injected failures."""

from __future__ import annotations

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
