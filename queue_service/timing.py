"""The clock the service stamps records with, and the one backoff rule of its retries."""

from __future__ import annotations

import random
import time


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch (task records, deadlines, Redis scores)."""
    return time.time_ns() // 1_000_000


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter before retry number `attempt` (1, 2, ...)."""
    ceiling = min(base * 2 ** (attempt - 1), cap)
    return random.uniform(ceiling / 2, ceiling)
