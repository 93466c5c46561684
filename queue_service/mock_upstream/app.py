"""The mock upstream app: routes, request recording and the request flow all APIs share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .anthropic import AnthropicDialect
from .completions import CompletionsDialect
from .config import MockConfig
from .controls import invalid_controls_message, parse_controls
from .dialect import Api, Call, Dialect, OneShotApi
from .images import IMAGE_FILES, ImagesApi
from .inbox import CallbackInbox
from .midjourney import MidjourneyApi
from .moderations import ModerationsApi
from .openai import OpenAIDialect
from .rate_window import RateWindow, retry_after
from .realtime import RealtimeSessionsApi
from .recording import MockState
from .reply import build_reply
from .speech import SpeechApi
from .streaming import EventStream, Producer, WatchedResponse, hang, json_producer
from .suno import SunoApi
from .uploads import upload_routes
from .vectors import EmbeddingsApi, RerankApi

Endpoint = Callable[[Request], Awaitable[Response | WatchedResponse]]


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


class _MockUpstream:
    def __init__(self, config: MockConfig, state: MockState) -> None:
        self.config = config
        self.state = state
        self.window = RateWindow(config.rpm, config.tpm)

    def generative(self, dialect: Dialect) -> Endpoint:
        """A model endpoint: a reply as a JSON body or, with `stream: true`, an event stream."""

        async def handle(request: Request) -> Response | WatchedResponse:
            call = await self.admit(request, dialect)
            if isinstance(call, Response):
                return call
            return self.respond(call, self.reply_producer(dialect, call))

        return handle

    def one_shot(self, api: OneShotApi) -> Endpoint:
        """An endpoint answering in one piece after the time to first byte."""

        async def handle(request: Request) -> Response | WatchedResponse:
            call = await self.admit(request, api)
            if isinstance(call, Response):
                return call
            answer = api.answer(call)
            return self.respond(
                call, json_producer(answer.body, self.ttft(call), answer.content_type)
            )

        return handle

    async def admit(self, request: Request, api: Api) -> Call | Response:
        """Record the request; the error response it gets, or what to answer it from."""
        response_id = api.new_id()
        recorded = await self.state.record(request, response_id)
        body = recorded.body
        api_key = self.config.api_key
        if api_key is not None and not api.authorized(recorded.headers, api_key):
            return api.error_response(401, "Invalid API key.")
        if not isinstance(body, dict):
            return api.error_response(400, "The body must be a JSON object.")
        try:
            controls = parse_controls(body.get("mock"))
        except ValidationError as exc:
            return api.error_response(400, invalid_controls_message(exc))
        problem = api.check(body, controls)
        if problem is not None:
            return api.error_response(400, problem)
        if controls.status is not None and self.state.should_fail(controls):
            headers = controls.failure_headers()
            return api.error_response(controls.status, f"Mock error {controls.status}.", headers)
        wait = self.window.admit()
        if wait is not None:
            headers = {"retry-after": retry_after(wait)}
            return api.error_response(
                429, "Rate limit reached: requests or tokens per minute.", headers
            )
        refused = controls.refuse_service_tier
        if refused is not None and body.get("service_tier") == refused:
            message = f"Resource unavailable: no capacity for service_tier {refused!r} right now."
            return api.error_response(429, message)
        model = body.get("model")
        if not isinstance(model, str):
            model = self.config.model
        return Call(body, controls, response_id, model, str(request.base_url))

    def respond(self, call: Call, producer: Producer) -> WatchedResponse:
        if call.controls.hang:
            producer = hang
        return WatchedResponse(producer, call.response_id, self.state.disconnects)

    def ttft(self, call: Call) -> float:
        ttft = self.config.ttft if call.controls.ttft is None else call.controls.ttft
        if "service_tier" in call.body:
            ttft += call.controls.service_tier_delay or 0.0
        return ttft

    def reply_producer(self, dialect: Dialect, call: Call) -> Producer:
        body, controls = call.body, call.controls
        reply = build_reply(
            response_id=call.response_id,
            model=call.model,
            user_text=dialect.user_text(body),
            prompt_tokens=dialect.prompt_tokens(body),
            controls=controls,
            reasoning_by_default=dialect.wants_reasoning(body, call.model),
        )
        self.window.used(reply.prompt_tokens + reply.completion_tokens)
        latency = self.config.token_latency
        if controls.token_latency is not None:
            latency = controls.token_latency
        if body.get("stream") is True:
            return EventStream(
                frames=dialect.stream_frames(reply, body),
                ttft=self.ttft(call),
                token_latency=latency,
                error_frame=dialect.stream_error,
                break_after=controls.break_after,
                error_after=controls.error_after,
            )
        # As long as the same answer would take to stream.
        delay = self.ttft(call) + max(reply.completion_tokens - 1, 0) * latency
        return json_producer(dialect.completion_body(reply), delay)

    async def recorded(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.reset()
            return _json({"ok": True})
        return _json(self.state.requests)

    async def disconnects(self, request: Request) -> Response:
        return _json(self.state.disconnects)

    async def rate_limited(self, request: Request) -> Response:
        return _json({"limited": self.window.limited[0]})


MODELS = ("deepseek-r1", "deepseek-chat", "gpt-4o-mini", "claude-sonnet-4", "text-embedding-3")


async def _models(request: Request) -> Response:
    """The models it answers as, in OpenAI's list shape (it answers as any model)."""
    listed = [{"id": name, "object": "model", "created": 0, "owned_by": "mock"} for name in MODELS]
    return Response(orjson.dumps({"object": "list", "data": listed}), media_type="application/json")


async def _healthz(request: Request) -> Response:
    return _json({"ok": True})


def create_mock_app(config: MockConfig | None = None) -> Starlette:
    """A Starlette app imitating OpenAI (chat and legacy completions, embeddings, moderations,
    image generation, speech), Anthropic `/v1/messages` and Jina `/v1/rerank`; and the task APIs
    Midjourney-proxy `/mj/...` and Suno `/suno/...` (tasks in `app.state.mock_mj_tasks` and
    `app.state.mock_suno_tasks`, see task_lifecycle.py).

    `app.state.mock_requests` lists every API request received, `app.state.mock_disconnects`
    the response ids whose client went away before the response was fully sent, and
    `app.state.mock_fail_counts` the `fail_times` counters; `DELETE /_mock/requests` clears all.
    With `rpm`/`tpm` set it answers 429 beyond them (`app.state.mock_rate_limited` counts those).
    `/_mock/callbacks` is a callback inbox (`app.state.mock_callbacks`); image `url`s point to
    `/_mock/images/`, Suno's `audio_url`s to `/_mock/audio/`.
    """
    config = config or MockConfig()
    state = MockState()
    upstream = _MockUpstream(config, state)
    midjourney, suno = MidjourneyApi(config, state), SunoApi(config, state)
    inbox = CallbackInbox()
    generative: dict[str, Dialect] = {
        "/v1/chat/completions": OpenAIDialect(),
        "/v1/messages": AnthropicDialect(),
        "/v1/completions": CompletionsDialect(),
    }
    one_shots: list[OneShotApi] = [
        EmbeddingsApi(),
        RerankApi(),
        ModerationsApi(),
        ImagesApi(),
        SpeechApi(),
        RealtimeSessionsApi(),
    ]
    app = Starlette(
        routes=[
            *(
                Route(path, upstream.generative(dialect), methods=["POST"])
                for path, dialect in generative.items()
            ),
            *(Route(api.path, upstream.one_shot(api), methods=["POST"]) for api in one_shots),
            Route("/_mock/requests", upstream.recorded, methods=["GET", "DELETE"]),
            Route("/_mock/disconnects", upstream.disconnects, methods=["GET"]),
            Route("/_mock/rate-limited", upstream.rate_limited, methods=["GET"]),
            Route("/healthz", _healthz, methods=["GET"]),
            Route("/v1/models", _models, methods=["GET"]),
            *upload_routes(state),
            *midjourney.routes(),
            *suno.routes(),
            IMAGE_FILES,
            inbox.route(),
        ]
    )
    app.state.mock_requests = state.requests
    app.state.mock_disconnects = state.disconnects
    app.state.mock_fail_counts = state.fail_counts
    app.state.mock_callbacks = inbox.received
    app.state.mock_rate_limited = upstream.window.limited
    app.state.mock_mj_tasks = midjourney.tasks
    app.state.mock_suno_tasks = suno.tasks
    return app
