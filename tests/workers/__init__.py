"""Tests of the worker modules on their own (the executor, upstream calls, SSE parsing)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


async def eventually(probe: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Call `probe` (sync or async) until it returns something truthy, within `timeout` s."""
    async with asyncio.timeout(timeout):
        while True:
            value = probe()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(0.01)
