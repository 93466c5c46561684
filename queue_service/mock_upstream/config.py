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
    """When set, `Authorization: Bearer <key>` (OpenAI, Midjourney, Suno) or `x-api-key: <key>`
    (Anthropic)."""
    rpm: int | None = None
    """Requests per minute it allows (over a sliding minute; 429 with Retry-After beyond)."""
    tpm: int | None = None
    """Tokens (prompt + completion) per minute it allows, likewise."""
    model: str = "mock-model"
    """Model name answered when the request names none."""
    task_duration: float = 2.0
    """Seconds a Midjourney or Suno task runs, from leaving the upstream's queue to its end."""
    task_steps: int = 4
    """Progress steps of such a task: its progress moves in jumps of `100 / task_steps` %."""
