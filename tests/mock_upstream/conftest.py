"""A running mock upstream for each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from . import Mock, running


@pytest.fixture
async def mock() -> AsyncIterator[Mock]:
    async with running() as running_mock:
        yield running_mock
