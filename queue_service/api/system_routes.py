"""Routes outside `/v1`: health, readiness, the OpenAPI document and its docs page."""

from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from queue_service.api.metrics import prometheus_text
from queue_service.api.openapi import openapi_document
from queue_service.api.responses import OrjsonResponse
from queue_service.api.state import AppState
from queue_service.errors import Forbidden, ServiceUnavailable

DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>queue-service API</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>"""


async def healthz(request: Request) -> Response:
    return OrjsonResponse({"ok": True})


async def readyz(request: Request) -> Response:
    state: AppState = request.app.state.queue
    if not state.ready:
        raise ServiceUnavailable("not ready: Redis was not reached yet")
    try:
        await state.store.ping()
    except Exception as exc:
        raise ServiceUnavailable(f"Redis is not reachable: {type(exc).__name__}") from None
    return OrjsonResponse({"ok": True, "redis": "reachable"})


async def openapi(request: Request) -> Response:
    state: AppState = request.app.state.queue
    context = state.put_context
    return OrjsonResponse(openapi_document(context.endpoints, context.max_timeout))


async def metrics(request: Request) -> Response:
    """With keys on, only an admin key or the scrape token (QUEUE_METRICS_TOKEN) reads it."""
    state: AppState = request.app.state.queue
    scraper = not state.auth.enabled or _scrape_token(request, state.settings.metrics_token)
    if not scraper and not (await state.admit(request)).admin:
        raise Forbidden("metrics take an admin key or the scrape token")
    settings = state.settings
    text = await prometheus_text(
        state.store, settings.metrics_top_queues, settings.metrics_top_models
    )
    return Response(text, media_type=CONTENT_TYPE_LATEST)


def _scrape_token(request: Request, token: str | None) -> bool:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return (
        token is not None
        and scheme.lower() == "bearer"
        and hmac.compare_digest(presented.strip().encode(), token.encode())
    )


async def docs(request: Request) -> Response:
    return HTMLResponse(DOCS_PAGE)


SYSTEM_ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
