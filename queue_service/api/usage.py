"""`GET /v1/queue/usage`: requests and tokens per tenant, queue, model and route over a window.

A tenant reads its own usage only (naming another tenant is 403), a key limited to some
queues those queues' only; admin keys read every tenant's. The figures come from the store
(store/usage.py), so every API process answers the same.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from queue_service.errors import BadRequest, Forbidden
from queue_service.models import QUEUE_NAME_PATTERN
from queue_service.store.usage import UsageCounts, hour_window

from .auth import Principal
from .responses import ok
from .state import AppState

DEFAULT_WINDOW_S = 24 * 3600
EPOCH_SECONDS = re.compile(r"\d{1,12}(\.\d{1,9})?")


async def usage(request: Request) -> Response:
    state: AppState = request.app.state.queue
    principal = await state.admit(request)
    params = request.query_params
    now = time.time()
    end = _instant(params.get("to"), "to", default=now)
    start = _instant(params.get("from"), "from", default=end - DEFAULT_WINDOW_S)
    if start >= end:
        raise BadRequest("'from' must be before 'to'")
    queue = params.get("queue") or None
    if queue is not None and not re.fullmatch(QUEUE_NAME_PATTERN, queue):
        raise BadRequest("'queue' must be a queue name (letters, digits, '.', '_', '-')")
    if queue is not None and not principal.admin:
        principal.check_queue(queue)
    tenants = _tenants(principal, params.get("tenant") or None)
    found = await state.store.usage.window(start, end, tenants, queue)
    rows = []
    totals = UsageCounts()
    for series, counts in sorted(found.items()):
        if principal.admin or principal.queues is None or series.queue in principal.queues:
            rows.append(
                {
                    "tenant": series.tenant,
                    "queue": series.queue,
                    "model": series.model,
                    "route": series.route,
                    **counts.as_dict(),
                }
            )
            totals += counts
    covered_from, covered_to = hour_window(start, end)
    return ok({"from": covered_from, "to": covered_to, "rows": rows, "totals": totals.as_dict()})


def _tenants(principal: Principal, asked: str | None) -> list[str] | None:
    """Whose usage to read: admins any (None: all), others only their own."""
    if principal.admin:
        return None if asked is None else [asked]
    if asked is not None and asked != principal.tenant:
        raise Forbidden("a key reads its own tenant's usage only")
    return [principal.tenant]


def _instant(text: str | None, name: str, default: float) -> float:
    """Epoch seconds from epoch seconds or an ISO-8601 time (UTC unless it says otherwise)."""
    if not text:
        return default
    if EPOCH_SECONDS.fullmatch(text):
        return float(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"'{name}' must be epoch seconds or an ISO-8601 time, such as 2026-01-31T12:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


ROUTES = [Route("/v1/queue/usage", usage, methods=["GET"])]
