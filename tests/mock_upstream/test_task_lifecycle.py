"""A task's phases over time, on a clock of the test's own."""

from __future__ import annotations

import pytest

from queue_service.mock_upstream.midjourney import action_of
from queue_service.mock_upstream.task_lifecycle import Lifecycle, Phase


def test_lifecycle_phases() -> None:
    life = Lifecycle(submitted=1000.0, clock=50.0, queued=1.0, duration=2.0, steps=4, fail=None)
    assert life.phase(50.0) == Phase("NOT_START", "0%", 0, None, None)
    assert life.phase(50.99) == Phase("NOT_START", "0%", 0, None, None)
    assert life.phase(51.0) == Phase("SUBMITTED", "0%", 0, 1001.0, None)
    assert life.phase(51.6) == Phase("IN_PROGRESS", "25%", 1, 1001.0, None)
    assert life.phase(52.0) == Phase("IN_PROGRESS", "50%", 2, 1001.0, None)
    assert life.phase(52.99) == Phase("IN_PROGRESS", "75%", 3, 1001.0, None)
    assert life.phase(53.0) == Phase("SUCCESS", "100%", 4, 1001.0, 1003.0)
    failing = Lifecycle(1000.0, 50.0, 0.0, 2.0, 3, "no")
    assert failing.phase(51.0) == Phase("IN_PROGRESS", "33%", 1, 1000.0, None)
    assert failing.phase(60.0) == Phase("FAILURE", "100%", 3, 1000.0, 1002.0)
    instant = Lifecycle(1000.0, 50.0, 0.0, 0.0, 4, None)
    assert instant.phase(50.0) == Phase("SUCCESS", "100%", 4, 1000.0, 1000.0)


@pytest.mark.parametrize(
    ("custom_id", "action"),
    [
        ("MJ::JOB::upsample::1::82c51c9d-bc33-4c07-a471-36c3dcb1a6f0", "UPSCALE"),
        ("MJ::JOB::variation::4::82c51c9d", "VARIATION"),
        ("MJ::JOB::reroll::0::82c51c9d::SOLO", "REROLL"),
        ("MJ::JOB::pan_left::1::82c51c9d::SOLO", "PAN"),
        ("MJ::Outpaint::50::1::82c51c9d::SOLO", "ZOOM"),
        ("MJ::JOB::low_variation::1::82c51c9d::SOLO", "ACTION"),
        ("something else", "ACTION"),
    ],
)
def test_action_from_custom_id(custom_id: str, action: str) -> None:
    assert action_of(custom_id) == action
