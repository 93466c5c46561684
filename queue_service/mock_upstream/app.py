"""The mock upstream app: routes, request recording and the request flow both APIs share."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .anthropic import AnthropicDialect
from .config import MockConfig
from .controls import MockControls, parse_controls
from .dialect import Dialect
from .inbox import CallbackInbox
from .openai import OpenAIDialect
from .recording import MockState, RecordedRequest
from .reply import build_reply
from .streaming import EventStream, Producer, WatchedResponse, hang, json_producer

Endpoint = Callable[[Request], Awaitable[Response | WatchedResponse]]


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, error['loc'])) or 'mock'}: {error['msg']}" for error in exc.errors()
    )


def _seconds(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


class _MockUpstream:
    def __init__(self, config: MockConfig, state: MockState) -> None:
        self.config = config
        self.state = state

    def endpoint(self, dialect: Dialect) -> Endpoint:
        async def handle(request: Request) -> Response | WatchedResponse:
            return await self.handle(request, dialect)

        return handle

    async def handle(self, request: Request, dialect: Dialect) -> Response | WatchedResponse:
        received_at = time.time()
        raw = await request.body()
        body: Any
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw.decode(errors="replace")
        response_id = dialect.new_id()
        headers = dict(request.headers)
        self.state.requests.append(
            RecordedRequest(request.url.path, headers, body, received_at, response_id)
        )
        api_key = self.config.api_key
        if api_key is not None and not dialect.authorized(headers, api_key):
            return dialect.error_response(401, "Invalid API key.")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return dialect.error_response(400, "The body must be a JSON object with `messages`.")
        try:
            controls = parse_controls(body.get("mock"))
        except ValidationError as exc:
            return dialect.error_response(400, f"Invalid mock controls: {_describe(exc)}")
        if controls.status is not None and self.state.should_fail(controls):
            retry = controls.retry_after
            extra = None if retry is None else {"retry-after": _seconds(retry)}
            return dialect.error_response(controls.status, f"Mock error {controls.status}.", extra)
        if controls.tool_call is not None and not body.get("tools"):
            return dialect.error_response(400, "mock.tool_call needs `tools` in the request.")
        producer = self.producer(dialect, body, controls, response_id)
        return WatchedResponse(producer, response_id, self.state.disconnects)

    def producer(
        self, dialect: Dialect, body: dict[str, Any], controls: MockControls, response_id: str
    ) -> Producer:
        if controls.hang:
            return hang
        model = body.get("model")
        if not isinstance(model, str):
            model = self.config.model
        reply = build_reply(
            response_id=response_id,
            model=model,
            messages=body["messages"],
            prompt_tokens=dialect.prompt_tokens(body),
            controls=controls,
            reasoning_by_default=dialect.wants_reasoning(body, model),
        )
        ttft = self.config.ttft if controls.ttft is None else controls.ttft
        latency = self.config.token_latency
        if controls.token_latency is not None:
            latency = controls.token_latency
        if body.get("stream") is True:
            return EventStream(
                frames=dialect.stream_frames(reply, body),
                ttft=ttft,
                token_latency=latency,
                error_frame=dialect.stream_error,
                break_after=controls.break_after,
                error_after=controls.error_after,
            )
        # As long as the same answer would take to stream.
        delay = ttft + max(reply.completion_tokens - 1, 0) * latency
        return json_producer(dialect.completion_body(reply), delay)

    async def recorded(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.reset()
            return _json({"ok": True})
        return _json(self.state.requests)

    async def disconnects(self, request: Request) -> Response:
        return _json(self.state.disconnects)


async def _healthz(request: Request) -> Response:
    return _json({"ok": True})


def create_mock_app(config: MockConfig | None = None) -> Starlette:
    """A Starlette app imitating OpenAI `/v1/chat/completions` and Anthropic `/v1/messages`.

    `app.state.mock_requests` lists every API request received, `app.state.mock_disconnects`
    the response ids whose client went away before the response was fully sent, and
    `app.state.mock_fail_counts` the `fail_times` counters; `DELETE /_mock/requests` clears all.
    `/_mock/callbacks` is a callback inbox (`app.state.mock_callbacks`).
    """
    state = MockState()
    upstream = _MockUpstream(config or MockConfig(), state)
    inbox = CallbackInbox()
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", upstream.endpoint(OpenAIDialect()), methods=["POST"]),
            Route("/v1/messages", upstream.endpoint(AnthropicDialect()), methods=["POST"]),
            Route("/_mock/requests", upstream.recorded, methods=["GET", "DELETE"]),
            Route("/_mock/disconnects", upstream.disconnects, methods=["GET"]),
            Route("/healthz", _healthz, methods=["GET"]),
            inbox.route(),
        ]
    )
    app.state.mock_requests = state.requests
    app.state.mock_disconnects = state.disconnects
    app.state.mock_fail_counts = state.fail_counts
    app.state.mock_callbacks = inbox.received
    return app
