"""Callers' own upstream keys (`QUEUE_UPSTREAM_AUTH=passthrough`), kept only encrypted.

The key rides on the task record encrypted with the server secret (`QUEUE_SECRET_KEY`), is
read by the worker that runs the job, and is deleted when the job ends.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from starlette.requests import Request

from queue_service.errors import Unauthorized

UPSTREAM_KEY_HEADER = "x-upstream-api-key"


class CredentialBox:
    def __init__(self, secret: str) -> None:
        digest = hashlib.sha256(secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, key: str) -> bytes:
        return self._fernet.encrypt(key.encode())

    def open(self, sealed: bytes) -> str | None:
        try:
            return self._fernet.decrypt(sealed).decode()
        except InvalidToken:
            return None


def caller_upstream_key(request: Request) -> str:
    """The key the caller wants sent upstream: `X-Upstream-Api-Key`, else its bearer key."""
    explicit = request.headers.get(UPSTREAM_KEY_HEADER, "").strip()
    if explicit:
        return explicit
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and bearer.strip():
        return bearer.strip()
    raise Unauthorized(
        "QUEUE_UPSTREAM_AUTH=passthrough: send your upstream key as "
        f"'{UPSTREAM_KEY_HEADER}' or 'Authorization: Bearer <key>'"
    )
