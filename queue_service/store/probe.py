"""Whether a Redis server answers at an address, asked without a client library: for tools
that start one when none runs (dev mode, CI, the test suite)."""

from __future__ import annotations

import socket


def redis_answers(host: str = "127.0.0.1", port: int = 6379, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False
