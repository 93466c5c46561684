"""The served endpoints: the API accepts exactly what the workers can run."""

from __future__ import annotations

from queue_service.endpoints import SERVED_ENDPOINTS
from workers.adapters import ADAPTERS


def test_every_served_endpoint_has_exactly_one_adapter() -> None:
    assert set(ADAPTERS) == SERVED_ENDPOINTS
    assert all(adapter.endpoint == endpoint for endpoint, adapter in ADAPTERS.items())
