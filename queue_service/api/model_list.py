"""What `GET /v1/models` lists: the models the routing file names, else the default
upstream's own list (fetched, then cached a minute)."""

from __future__ import annotations

import time

import httpx

MODELS_CACHE_S = 60.0


class ModelList:
    """What `GET /v1/models` lists: the routed models, or the default upstream's (cached)."""

    def __init__(self, routed: list[str], upstream_url: str, api_key: str | None) -> None:
        self.routed = routed
        self.upstream_url = upstream_url.rstrip("/")
        self.api_key = api_key
        self._cached: tuple[float, list[dict[str, object]]] | None = None

    async def listed(self) -> list[dict[str, object]]:
        if self.routed:
            return [_model(name) for name in self.routed]
        if self._cached is not None and self._cached[0] > time.monotonic():
            return self._cached[1]
        models = await self._upstream_models()
        self._cached = (time.monotonic() + MODELS_CACHE_S, models)
        return models

    async def _upstream_models(self) -> list[dict[str, object]]:
        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            async with httpx.AsyncClient(timeout=2.0) as http:
                answer = await http.get(f"{self.upstream_url}/v1/models", headers=headers)
            listed = answer.json()["data"] if answer.is_success else []
            return [_model(str(entry["id"])) for entry in listed if isinstance(entry, dict)]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return []


def _model(name: str) -> dict[str, object]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "queue-service"}
