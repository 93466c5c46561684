"""Which routing-file upstream served a job, by name, for usage accounting.

Outcomes are recorded in one place for the executor and the task follower (outcomes.py),
which knows the job but not the route its caller took; this answers it from the job alone,
with `RoutingTable.resolve`'s precedence (a test holds the two together).
"""

from __future__ import annotations

from collections.abc import Sequence

from queue_service.upstreams import UpstreamEntry, load_routing_file

DEFAULT_ROUTE = "default"
"""The route of jobs no routing-file entry matches (they go to QUEUE_UPSTREAM_URL)."""


class RouteNames:
    def __init__(self, entries: Sequence[UpstreamEntry] = ()) -> None:
        self._names = {(entry.endpoint, entry.queue, entry.model): entry.name for entry in entries}

    @classmethod
    def load(cls, path: str | None) -> RouteNames:
        return cls(load_routing_file(path).upstream if path is not None else ())

    def of(self, endpoint: str, queue: str, model: object) -> str:
        """The name of the route serving a job: most specific first, as the routing does."""
        model_name = model if isinstance(model, str) else None
        for key in (
            (endpoint, queue, model_name),
            (endpoint, queue, None),
            (endpoint, None, model_name),
            (endpoint, None, None),
        ):
            name = self._names.get(key)
            if name is not None:
                return name
        return DEFAULT_ROUTE
