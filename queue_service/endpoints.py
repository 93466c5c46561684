"""The endpoints the service serves: the API accepts jobs for these, workers adapt each one.

Kept apart from both so the API never imports the workers; `workers/adapters` has exactly one
adapter per endpoint here (a test holds them together).
"""

from __future__ import annotations

SERVED_ENDPOINTS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/rerank",
        "/v1/moderations",
        "/v1/images/generations",
        "/v1/audio/speech",
    }
)
