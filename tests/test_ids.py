import re

from queue_service.models import ResponseMode
from queue_service.store.ids import TaskId, TaskIdFactory


def test_made_ids_have_the_documented_shape_and_parse_back() -> None:
    factory = TaskIdFactory(instance=7)
    task_id = factory.make(queue_id=12, level=1, mode=ResponseMode.CALLBACK)
    text = str(task_id)
    assert re.fullmatch(r"TASK-12-1-C-\d{12}-0007-000001", text)
    assert TaskId.parse(text) == task_id


def test_serials_count_up_per_process() -> None:
    factory = TaskIdFactory(instance=0)
    first, second = (factory.make(1, 0, ResponseMode.BLOCKING) for _ in range(2))
    assert (first.serial, second.serial) == (1, 2)
    assert str(first).split("-")[3] == "B"


def test_mode_letters() -> None:
    assert [mode.letter for mode in ResponseMode] == ["C", "B", "S"]


def test_garbage_is_not_an_id() -> None:
    for text in ["", "TASK-", "TASK-1-2-C-260101000000-0001-000001", "TASK-1-0-X-1-1-1", "x" * 90]:
        assert TaskId.parse(text) is None
