"""TaskRecord's hash layout (written, stored in Redis, read back), its public view, and
how an Outcome's body is shown."""

from __future__ import annotations

import base64

import orjson
from redis.asyncio import Redis

from queue_service.models import CallbackState, ResponseMode, Status
from queue_service.store import Keys, Outcome, TaskRecord
from queue_service.store.records import callback_fields


def record(**changes: object) -> TaskRecord:
    fields: dict[str, object] = {
        "task_id": "TASK-1-0-C-260101000000-0001-000001",
        "queue": "q",
        "level": 0,
        "mode": ResponseMode.CALLBACK,
        "endpoint": "chat/completions",
        "data": b'{"messages":[]}',
        "callback_url": "https://example.com/hook",
        "tenant": "alice",
        "status": Status.QUEUED,
        "created_at": 1_700_000_000_000,
        "deadline": 1_700_000_060_000,
    } | changes
    return TaskRecord(**fields)  # type: ignore[arg-type]


async def stored(redis: Redis, prefix: str, fields: dict[str, str | int | bytes]) -> TaskRecord:
    """Write hash fields to Redis and read them back as a record, as the store does."""
    key = Keys(prefix).task("q", "x")
    await redis.hset(key, mapping=fields)  # type: ignore[misc]
    return TaskRecord.from_hash(await redis.hgetall(key))  # type: ignore[misc]


async def test_a_new_record_round_trips_through_redis(redis: Redis, prefix: str) -> None:
    new = record()
    assert await stored(redis, prefix, new.to_hash()) == new


async def test_a_finished_record_round_trips_with_outcome_and_callback(
    redis: Redis, prefix: str
) -> None:
    finished = record(
        status=Status.SUCCEEDED,
        attempts=2,
        started_at=1_700_000_001_000,
        finished_at=1_700_000_002_000,
        outcome=Outcome(Status.SUCCEEDED, 200, b'{"ok":true}', "application/json"),
        callback_status=CallbackState.RETRYING,
        callback_attempts=3,
        callback_last_error="connect timeout",
    )
    assert await stored(redis, prefix, finished.to_hash()) == finished


async def test_binary_data_and_body_survive_unchanged(redis: Redis, prefix: str) -> None:
    raw = bytes(range(256))
    binary = record(
        data=raw,
        status=Status.FAILED,
        finished_at=1_700_000_002_000,
        outcome=Outcome(Status.FAILED, 502, raw, "application/octet-stream"),
    )
    back = await stored(redis, prefix, binary.to_hash())
    assert back.data == raw
    assert back.outcome == Outcome(Status.FAILED, 502, raw, "application/octet-stream")


async def test_outcome_and_callback_fields_update_a_stored_record(
    redis: Redis, prefix: str
) -> None:
    """What finish.lua and the callback ledger write on top of a record reads back."""
    outcome = Outcome.error(Status.TIMEOUT, 504, "too slow", "timeout")
    fields = (
        record().to_hash()
        | outcome.fields(1_700_000_003_000)
        | callback_fields(CallbackState.DELIVERED, 1, None)
    )
    back = await stored(redis, prefix, fields)
    assert back.status is Status.TIMEOUT
    assert back.finished_at == 1_700_000_003_000
    assert back.outcome == outcome
    assert (back.callback_status, back.callback_attempts) == (CallbackState.DELIVERED, 1)
    assert back.callback_last_error == ""


def test_a_record_without_outcome_has_no_result_fields() -> None:
    fields = record().to_hash()
    assert not {"status_code", "result", "finished_at", "callback_status"} & fields.keys()
    assert record().outcome is None


def test_public_view_of_a_callback_job_has_the_callback_block_and_never_the_tenant() -> None:
    view = record(
        status=Status.SUCCEEDED,
        started_at=1_700_000_001_000,
        finished_at=1_700_000_002_000,
        attempts=1,
        outcome=Outcome(Status.SUCCEEDED, 200, b'{"answer":42}'),
        callback_status=CallbackState.RETRYING,
        callback_attempts=2,
        callback_last_error="HTTP 500",
    ).public_view()
    assert view == {
        "task_id": "TASK-1-0-C-260101000000-0001-000001",
        "queue": "q",
        "level": 0,
        "response_mode": ResponseMode.CALLBACK,
        "endpoint": "chat/completions",
        "status": Status.SUCCEEDED,
        "created_at": 1_700_000_000_000,
        "deadline": 1_700_000_060_000,
        "started_at": 1_700_000_001_000,
        "finished_at": 1_700_000_002_000,
        "attempts": 1,
        "status_code": 200,
        "result": {"answer": 42},
        "callback": {
            "url": "https://example.com/hook",
            "status": CallbackState.RETRYING,
            "attempts": 2,
            "last_error": "HTTP 500",
        },
    }
    assert "alice" not in orjson.dumps(view).decode()


def test_public_view_of_a_queued_job_has_no_result_and_no_error() -> None:
    view = record().public_view()
    assert (view["status"], view["status_code"], view["result"]) == (Status.QUEUED, None, None)
    assert view["callback"]["last_error"] is None
    assert view["callback"]["status"] is CallbackState.PENDING


def test_public_view_of_blocking_and_streaming_jobs_has_no_callback_block() -> None:
    for mode in (ResponseMode.BLOCKING, ResponseMode.STREAMING):
        view = record(mode=mode, callback_url="", tenant="bob").public_view()
        assert "callback" not in view
        assert "tenant" not in view
        assert "bob" not in orjson.dumps(view).decode()


def test_body_value_of_json_is_the_parsed_value() -> None:
    assert Outcome(Status.SUCCEEDED, 200, b'{"a":[1,2]}').body_value() == {"a": [1, 2]}
    vendor = Outcome(Status.SUCCEEDED, 200, b"[1]", "application/problem+json; charset=utf-8")
    assert vendor.body_value() == [1]


def test_body_value_of_text_is_the_text() -> None:
    text = Outcome(Status.SUCCEEDED, 200, "héllo".encode(), "text/plain; charset=utf-8")
    assert text.body_value() == "héllo"
    stream = Outcome(Status.SUCCEEDED, 200, b"data: x\n\n", "text/event-stream")
    assert stream.body_value() == "data: x\n\n"


def test_body_value_of_binary_or_broken_json_is_base64_with_its_content_type() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\xff"
    assert Outcome(Status.SUCCEEDED, 200, png, "image/png").body_value() == {
        "content_type": "image/png",
        "base64": base64.b64encode(png).decode(),
    }
    broken = Outcome(Status.FAILED, 502, b"<html>bad gateway", "application/json")
    assert broken.body_value() == {
        "content_type": "application/json",
        "base64": base64.b64encode(b"<html>bad gateway").decode(),
    }


def test_outcome_error_is_a_json_error_body() -> None:
    outcome = Outcome.error(Status.FAILED, 502, "upstream down", "upstream_error")
    assert (outcome.status, outcome.status_code, outcome.content_type) == (
        Status.FAILED,
        502,
        "application/json",
    )
    assert outcome.body_value() == {"error": {"message": "upstream down", "type": "upstream_error"}}
