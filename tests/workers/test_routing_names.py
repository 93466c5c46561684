"""Route names for usage: each job's route is named as the routing file names it."""

from __future__ import annotations

import itertools
from pathlib import Path

from queue_service.upstreams import UpstreamEntry
from workers.adapters import Upstream
from workers.routing import DEFAULT_ROUTE, RoutingTable

CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"
ENTRIES = [
    UpstreamEntry(name="chat", endpoint=CHAT, base_url="http://chat"),
    UpstreamEntry(name="chat-r1", endpoint=CHAT, model="r1", base_url="http://chat-r1"),
    UpstreamEntry(name="chat-batch", endpoint=CHAT, queue="batch", base_url="http://chat-batch"),
    UpstreamEntry(
        name="chat-batch-r1", endpoint=CHAT, queue="batch", model="r1", base_url="http://cbr1"
    ),
    UpstreamEntry(name="claude-batch", endpoint=MESSAGES, queue="batch", base_url="http://cb"),
]


def test_every_job_gets_the_name_of_the_route_the_routing_table_picks() -> None:
    default = Upstream("http://default", None)
    table = RoutingTable(default, ENTRIES)
    by_url = {entry.base_url: entry.name for entry in ENTRIES} | {default.base_url: DEFAULT_ROUTE}
    jobs = itertools.product(
        (CHAT, MESSAGES, "/v1/embeddings"), ("batch", "chat"), ("r1", "m", None, 7)
    )
    for endpoint, queue, model in jobs:
        picked = table.resolve(endpoint, queue, model)
        assert picked.name == by_url[picked.upstream.base_url], (endpoint, queue, model)


def test_without_a_routing_file_every_job_is_on_the_default_route(tmp_path: Path) -> None:
    default = Upstream("http://default", None)
    assert RoutingTable.load(None, default).resolve(CHAT, "q", "m").name == DEFAULT_ROUTE
    path = tmp_path / "upstreams.toml"
    path.write_text(
        '[[upstream]]\nname = "claude"\nendpoint = "/v1/messages"\nbase_url = "http://c"\n'
    )
    loaded = RoutingTable.load(str(path), default)
    assert loaded.resolve(MESSAGES, "q", "m").name == "claude"
    assert loaded.resolve(CHAT, "q", "m").name == DEFAULT_ROUTE
