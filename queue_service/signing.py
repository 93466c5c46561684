"""Signed callbacks: `X-Queue-Signature: sha256=<hex HMAC-SHA256 of "timestamp.body">`.

A receiver verifies with `verify_callback(secret, body, timestamp, signature)` (or the four
lines it holds, see the README), refusing stale timestamps to stop replays.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "x-queue-timestamp"
SIGNATURE_HEADER = "x-queue-signature"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def signature_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify_callback(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """True when `signature` signs `timestamp.body` with `secret` and the timestamp is fresh."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
