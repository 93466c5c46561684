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
        "/v1/realtime/sessions",
    }
)

UNQUEUEABLE = {
    "/v1/realtime": (
        "/v1/realtime is a live WebSocket (or WebRTC) session of two-way audio and events, which "
        "a queue cannot hold: connect to the upstream directly, with an ephemeral key minted "
        "through the queue by /v1/realtime/sessions"
    ),
}
"""Endpoints that cannot be queued, and why (a put on one answers 400 saying so)."""
