"""Server-wide settings of the mock upstream."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MockConfig:
    """Defaults for every request; the per-request `mock` controls override them."""

    ttft: float = 0.0
    """Seconds before the first byte of a response (stream or not)."""
    token_latency: float = 0.0
    """Seconds between streamed tokens (non-stream replies take just as long)."""
    api_key: str | None = None
    """When set, `Authorization: Bearer <key>` (OpenAI) or `x-api-key: <key>` (Anthropic)."""
    model: str = "mock-model"
    """Model name answered when the request names none."""
