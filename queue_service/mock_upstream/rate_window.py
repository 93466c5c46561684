"""The mock's own requests- and tokens-per-minute limits, enforced as providers replenish
them: continuously, a minute's worth at most (a token bucket each). A request is refused with
429 and `Retry-After` when no request is left or the tokens are spent (an answer's tokens are
counted once it is made, so the bucket may go below zero). Every 429 it answers is counted
(`app.state.mock_rate_limited`), so a benchmark can tell how many a run earned."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    size: int
    level: float = field(init=False)
    at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.level = float(self.size)

    def refill(self, now: float) -> float:
        self.level = min(self.size, self.level + (now - self.at) * self.size / 60)
        self.at = now
        return self.level

    def seconds_until(self, level: float) -> float:
        return max(level - self.level, 0.0) * 60 / self.size


@dataclass
class RateWindow:
    rpm: int | None = None
    tpm: int | None = None
    limited: list[int] = field(default_factory=lambda: [0])
    """One counter: the 429s answered so far (a list, so app.state can hold it)."""

    def __post_init__(self) -> None:
        self._requests = _Bucket(self.rpm) if self.rpm else None
        self._tokens = _Bucket(self.tpm) if self.tpm else None

    def admit(self) -> float | None:
        """None when a request may go ahead now (it is counted), else the seconds until it
        may."""
        now = time.monotonic()
        wait = 0.0
        if self._requests is not None and self._requests.refill(now) < 1:
            wait = self._requests.seconds_until(1)
        if self._tokens is not None and self._tokens.refill(now) <= 0:
            wait = max(wait, self._tokens.seconds_until(1))
        if wait > 0:
            self.limited[0] += 1
            return wait
        if self._requests is not None:
            self._requests.level -= 1
        return None

    def used(self, tokens: int) -> None:
        """Count an answer's tokens."""
        if self._tokens is not None:
            self._tokens.refill(time.monotonic())
            self._tokens.level -= tokens


def retry_after(seconds: float) -> str:
    return str(max(math.ceil(seconds), 1))
