"""Bearer-key authentication: which tenant a request speaks for."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from .errors import Unauthorized

NO_AUTH_TENANT = ""


class Authenticator:
    """Maps `Authorization: Bearer <key>` to a tenant; with no keys configured, all is open."""

    def __init__(self, key_tenants: dict[str, str]) -> None:
        self._keys = [(key.encode(), tenant) for key, tenant in key_tenants.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def tenant(self, request: Request) -> str:
        if not self._keys:
            return NO_AUTH_TENANT
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        candidate = presented.strip().encode()
        found: str | None = None
        for key, tenant in self._keys:  # compare against every key: constant time
            if hmac.compare_digest(key, candidate):
                found = tenant
        if found is None:
            raise Unauthorized("invalid API key")
        return found
