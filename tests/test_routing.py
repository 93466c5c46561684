"""Upstream routing from QUEUE_UPSTREAMS_FILE: matching, and clear start-up errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from queue_service.upstreams import RoutingError
from tests.conftest import process_env
from workers.adapters import Upstream
from workers.routing import Limit, RoutingTable
from workers.upstream_priority import NO_HINTS, LevelHints

DEFAULT = Upstream("http://default")
CHAT = "/v1/chat/completions"

ROUTES = """
[[upstream]]
name = "general"
endpoint = "/v1/chat/completions"
base_url = "http://general"
api_key = "k-general"

[[upstream]]
name = "r1"
endpoint = "/v1/chat/completions"
model = "deepseek-r1"
base_url = "http://r1"
api_key_env = "ROUTING_TEST_KEY"
timeout = 12
max_concurrency = 8

[[upstream]]
name = "batch-r1"
endpoint = "/v1/chat/completions"
model = "deepseek-r1"
queue = "batch"
base_url = "http://batch-r1"

[[queue]]
name = "batch"
max_concurrency = 4
"""


HINTED = '[[upstream]]\nname = "vllm"\nendpoint = "/v1/x"\nbase_url = "http://x"\n'
"""A route to which the level keys are added."""


def load(tmp_path: Path, text: str) -> RoutingTable:
    path = tmp_path / "upstreams.toml"
    path.write_text(text)
    return RoutingTable.load(str(path), DEFAULT)


def test_the_most_specific_route_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTING_TEST_KEY", "k-r1")
    table = load(tmp_path, ROUTES)
    general = table.resolve(CHAT, "online", "gpt-4o")
    assert general.upstream == Upstream("http://general", "k-general")
    assert general.limits == ()
    r1 = table.resolve(CHAT, "online", "deepseek-r1")
    assert (r1.upstream, r1.timeout) == (Upstream("http://r1", "k-r1"), 12)
    assert r1.limits == (Limit("upstream:r1", 8),)
    batch = table.resolve(CHAT, "batch", "deepseek-r1")
    assert batch.upstream.base_url == "http://batch-r1"
    assert batch.limits == (Limit("queue:batch", 4),)
    assert table.resolve("/v1/embeddings", "batch", None).upstream == DEFAULT
    assert table.resolve("/v1/embeddings", "batch", None).limits == (Limit("queue:batch", 4),)
    assert table.has_limits


def test_a_route_carries_its_level_keys(tmp_path: Path) -> None:
    keys = 'priority_field = "prio"\npriority_online = 9\npriority_offline = 3\n'
    keys += 'offline_service_tier = "flex"\ntier_fallback_before_deadline = 90\n'
    hinted = load(tmp_path, HINTED + keys).resolve("/v1/x", "q", None).hints
    assert hinted == LevelHints("prio", 9, 3, "flex", 90.0)
    plain = load(tmp_path, HINTED).resolve("/v1/x", "q", None).hints
    assert (plain.priority_field, plain.offline_service_tier) == (None, None)
    assert RoutingTable.load(None, DEFAULT).resolve(CHAT, "q", "m").hints == NO_HINTS


def test_without_a_file_everything_goes_to_the_default() -> None:
    table = RoutingTable.load(None, DEFAULT)
    assert table.resolve(CHAT, "q", "m").upstream == DEFAULT
    assert not table.has_limits


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[upstream]\n", "not valid TOML"),
        ('[[upstream]]\nname = "x"\nendpoint = "/v1/x"\n', "base_url: Field required"),
        ('[[upstream]]\nname="x"\nendpoint="/v1/x"\nbase_url="ftp://x"\n', "base_url"),
        (
            '[[upstream]]\nname="x"\nendpoint="/v1/x"\nbase_url="http://x"\nmax_concurrency=0\n',
            "max_concurrency",
        ),
        ('[[upstream]]\nname="x"\nendpoint="/v1/x"\nbase_url="http://x"\nsurprise=1\n', "surprise"),
        (
            '[[upstream]]\nname="x"\nendpoint="/v1/x"\nbase_url="http://x"\napi_key_env="ROUTING_UNSET_VAR"\n',
            "ROUTING_UNSET_VAR is not set",
        ),
        (
            '[[upstream]]\nname="a"\nendpoint="/v1/x"\nbase_url="http://x"\n[[upstream]]\nname="b"\nendpoint="/v1/x"\nbase_url="http://y"\n',
            "two upstreams route /v1/x",
        ),
        (
            HINTED + "priority_online = 5\n",
            "priority_online and priority_offline need priority_field",
        ),
        (HINTED + 'priority_field = "stream"\n', "priority_field cannot be 'stream'"),
        (HINTED + 'priority_field = "a b"\n', "upstream.0.priority_field: String should match"),
        (
            HINTED + 'priority_field = "priority"\npriority_offline = 0\n',
            "priority_online and priority_offline must differ",
        ),
        (
            HINTED + 'priority_field = "priority"\npriority_offline = 1.5\n',
            "upstream.0.priority_offline: Input should be a valid integer",
        ),
        (HINTED + 'offline_service_tier = ""\n', "upstream.0.offline_service_tier"),
        (
            HINTED + "tier_fallback_before_deadline = 30\n",
            "tier_fallback_before_deadline needs offline_service_tier",
        ),
        (
            HINTED + 'offline_service_tier = "flex"\ntier_fallback_before_deadline = -1\n',
            "upstream.0.tier_fallback_before_deadline: Input should be greater than or equal to 0",
        ),
    ],
)
def test_bad_files_are_refused_with_a_clear_message(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(RoutingError, match=message):
        load(tmp_path, text)


def test_a_missing_file_is_a_clear_error() -> None:
    with pytest.raises(RoutingError, match="cannot read QUEUE_UPSTREAMS_FILE"):
        RoutingTable.load("/nonexistent/upstreams.toml", DEFAULT)


def test_a_worker_with_a_bad_routing_file_exits_at_start_up_saying_why(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[upstream]\n")
    env = process_env(redis_url, prefix, upstreams_file=str(bad))
    worker = [str(Path(sys.executable).parent / "queue-service"), "worker"]
    result = subprocess.run(worker, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "is not valid TOML" in result.stderr
    assert "Traceback" not in result.stderr
