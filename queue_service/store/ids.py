"""Task ids: `TASK-{queue_id}-{level}-{mode}-{yyMMddHHmmss}-{instance:04d}-{serial:06d}`.

The id carries the queue, the level and the response mode, so a task can be found (and
its queue's keys built) from its id alone.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass

from queue_service.models import ResponseMode

_MODES_BY_LETTER = {mode.letter: mode for mode in ResponseMode}
_TASK_ID = re.compile(r"^TASK-(\d{1,9})-([01])-([BSC])-(\d{12})-(\d{4})-(\d{6})$")
SERIAL_MODULUS = 1_000_000


@dataclass(frozen=True, slots=True)
class TaskId:
    queue_id: int
    level: int
    mode: ResponseMode
    stamp: str
    instance: int
    serial: int

    def __str__(self) -> str:
        return (
            f"TASK-{self.queue_id}-{self.level}-{self.mode.letter}-{self.stamp}"
            f"-{self.instance:04d}-{self.serial:06d}"
        )

    @classmethod
    def parse(cls, text: str) -> TaskId | None:
        """Parse a task id; None when `text` is not one."""
        match = _TASK_ID.match(text)
        if match is None:
            return None
        queue_id, level, letter, stamp, instance, serial = match.groups()
        return cls(
            int(queue_id), int(level), _MODES_BY_LETTER[letter], stamp, int(instance), int(serial)
        )


class TaskIdFactory:
    """Makes the ids of one front-end process: `instance` tells processes apart."""

    def __init__(self, instance: int) -> None:
        self.instance = instance % 10_000
        self._serials = itertools.count(1)
        self._second = -1
        self._stamp = ""

    def make(self, queue_id: int, level: int, mode: ResponseMode) -> TaskId:
        second = int(time.time())
        if second != self._second:  # formatting the time is the costly part: once a second
            self._second, self._stamp = second, time.strftime("%y%m%d%H%M%S", time.gmtime(second))
        serial = next(self._serials) % SERIAL_MODULUS
        return TaskId(queue_id, level, mode, self._stamp, self.instance, serial)
