"""Health, readiness, the OpenAPI document and the docs page."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from starlette.routing import Route

from queue_service.api.app import create_app
from queue_service.settings import Settings
from tests.servers import serve


async def test_health_and_readiness(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"ok": True}
    ready = await api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["redis"] == "reachable"


async def test_readiness_fails_without_redis(settings: Settings) -> None:
    from tests.servers import TcpProxy

    target = urlsplit(settings.redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    proxied = f"redis://127.0.0.1:{proxy.port}{target.path or '/0'}"
    cut = Settings(**{**settings.model_dump(), "redis_url": proxied})
    async with serve(create_app(cut)) as url, httpx.AsyncClient(base_url=url) as client:
        await proxy.cut()
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert "Redis is not reachable" in response.json()["message"]
        assert (await client.get("/healthz")).status_code == 200


UNDOCUMENTED = {"/openapi.json", "/docs"}


async def test_the_openapi_document_describes_every_route(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    served = {
        (route.path, method.lower())
        for route in create_app().routes
        if isinstance(route, Route) and route.methods and route.path not in UNDOCUMENTED
        for method in route.methods - {"HEAD"}
    }
    documented = {(path, method) for path, item in paths.items() for method in item}
    assert served == documented
    put_body = paths["/v1/queue/put"]["post"]["requestBody"]["content"]["application/json"]
    assert put_body["schema"] == {"$ref": "#/components/schemas/PutRequest"}
    schema = document["components"]["schemas"]["PutRequest"]
    assert set(schema["required"]) == {"queue", "endpoint", "level", "data"}
    assert "/v1/chat/completions" in document["info"]["description"]
    task = document["components"]["schemas"]["TaskView"]
    assert "status" in task["properties"]


async def test_the_docs_page_renders_the_document(api: httpx.AsyncClient) -> None:
    page = await api.get("/docs")
    assert page.status_code == 200
    assert "/openapi.json" in page.text
