"""Callers' own upstream keys (`QUEUE_UPSTREAM_AUTH=passthrough`), kept only encrypted.

The key rides on the task record encrypted with the server secret (`QUEUE_SECRET_KEY`), is
read by the worker that runs the job, and is deleted when the job ends.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


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
