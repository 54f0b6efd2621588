"""The OpenAI-compatible ASGI app (Starlette) over one Model.

The event loop never runs a forward pass or a tokenizer: tokenizing and chat templates run in a
worker thread (anyio.to_thread), and the engine thread hands each admitted request's text to the
loop as its step ends (pump.py), batching the concurrent requests into shared steps. A
client that disconnects is noticed at once and its stream closed: the engine frees the sequence
at its next step.

Admission: at most `parallel + max_queue` generation requests are admitted at once; past that a
request gets 503 with Retry-After instead of waiting unboundedly. Draining (SIGTERM, see cli.py)
refuses new requests with 503 while the admitted ones finish.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..errors import (
    ChatTemplateError,
    ContextLengthError,
    OptionError,
    PromptError,
    PromptTypeError,
    PyrustmlError,
)
from . import metrics
from .pump import Pump
from .responses import Shape, error_response, sse
from .schemas import ChatRequest, CompletionRequest, ValidationError, error_param

if TYPE_CHECKING:
    from ..model import Generation, Model

log = logging.getLogger("pyrustml.serve")

_CLIENT_ERRORS = (OptionError, PromptError, PromptTypeError, ContextLengthError, ChatTemplateError)
RETRY_AFTER_S = 1


@dataclass
class ServeConfig:
    model_name: str
    api_key: str | None = None
    max_queue: int = 64  # admitted requests waiting for a slot, beyond the model's parallel ones
    max_body_bytes: int = 2 * 1024 * 1024
    instance: str | None = None  # sent as X-Pyrustml-Instance on every response (Ray replica id)
    close_model: bool = True  # close the Model at shutdown (the app owns it)


class _Refused(Exception):
    """A request answered with an error before any generation started."""

    def __init__(self, response: Response) -> None:
        self.response = response


class ServerState:
    """What the routes share: the model, the admission count, the drain flag, the counters."""

    def __init__(self, model: Model, cfg: ServeConfig) -> None:
        self.model = model
        self.cfg = cfg
        self.capacity = max(1, model.parallel) + cfg.max_queue
        self.counters = metrics.ServerCounters()
        self.registry = metrics.registry(model, self.counters)
        self.draining = False
        self.created = int(time.time())
        self._lock = threading.Lock()
        # Worker threads for tokenizing and /metrics: one per admitted request at most, plus a
        # few (anyio's default limit of 40 would throttle a large --parallel).
        self.limiter = anyio.CapacityLimiter(self.capacity + 8)

    def admit(self) -> bool:
        with self._lock:
            if self.counters.in_flight >= self.capacity:
                return False
            self.counters.in_flight += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.counters.in_flight -= 1

    @property
    def busy(self) -> int:
        return self.counters.in_flight


# ---- request checks ----------------------------------------------------------------------
def _check_auth(state: ServerState, request: Request) -> None:
    key = state.cfg.api_key
    if key is None:
        return
    got = request.headers.get("authorization", "")
    scheme, _, token = got.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise _Refused(
            error_response(
                401,
                "missing or incorrect API key (send Authorization: Bearer KEY)",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        )


def _unavailable(message: str) -> _Refused:
    return _Refused(
        error_response(
            503,
            message,
            type_="server_error",
            code="server_overloaded",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    )


async def _read_body(state: ServerState, request: Request) -> bytes:
    limit = state.cfg.max_body_bytes
    too_large = _Refused(
        error_response(413, f"the request body is over {limit} bytes", code="request_too_large")
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # chunked bodies are counted as they arrive
        size += len(chunk)
        if size > limit:
            raise too_large
        parts.append(chunk)
    return b"".join(parts)


def _library_error(exc: PyrustmlError) -> Response:
    if isinstance(exc, _CLIENT_ERRORS):
        code = "context_length_exceeded" if isinstance(exc, ContextLengthError) else None
        return error_response(400, str(exc), code=code)
    log.error("request failed: %s: %s", type(exc).__name__, exc)
    return error_response(500, f"{type(exc).__name__}: {exc}", type_="server_error")


# ---- generation --------------------------------------------------------------------------
@dataclass
class _Job:
    """One admitted request: its prompt ids and the options for Model.stream."""

    ids: list[int]
    options: dict[str, Any]
    stream: bool
    include_usage: bool
    shape: Shape


def _options(
    req: ChatRequest | CompletionRequest, max_tokens: int, logprobs: bool, top: int
) -> dict[str, Any]:
    return {
        "max_tokens": max_tokens,
        "temperature": req.temperature,
        "top_k": req.top_k,
        "top_p": req.top_p,
        "min_p": req.min_p,
        "repetition_penalty": req.repeat_penalty,
        "seed": req.seed,
        "stop": req.stops() or None,
        "ignore_eos": req.ignore_eos,
        "logprobs": logprobs,
        "top_logprobs": top,
    }


def _prepare(state: ServerState, req: ChatRequest | CompletionRequest) -> _Job:
    """Tokenize and check the request against the context (runs in a worker thread)."""
    model = state.model
    if isinstance(req, ChatRequest):
        if model.chat_template is None:
            raise ChatTemplateError("this model has no chat template: use /v1/completions")
        ids = model.render_chat([{"role": m.role, "content": m.text()} for m in req.messages])
        logprobs, top = req.logprobs, (req.top_logprobs or 0)
        where = "messages"
    else:
        ids = model.encode(req.prompt_value())
        logprobs, top = req.logprobs is not None, (req.logprobs or 0)
        where = "prompt"
    room = model.ctx - len(ids)
    if room < 1:
        raise _Refused(
            error_response(
                400,
                f"the prompt has {len(ids)} tokens; the context is {model.ctx}",
                param=where,
                code="context_length_exceeded",
            )
        )
    asked = req.limit()
    if asked is None:
        asked = room if isinstance(req, ChatRequest) else min(16, room)  # OpenAI's defaults
    elif asked > room:
        name = "max_completion_tokens" if getattr(req, "max_completion_tokens", None) else "max_tokens"
        raise _Refused(
            error_response(
                400,
                f"the prompt ({len(ids)} tokens) plus {name} ({asked}) is over the context of {model.ctx}",
                param=name,
                code="context_length_exceeded",
            )
        )
    chat = isinstance(req, ChatRequest)
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    shape = Shape(chat, rid, int(time.time()), state.cfg.model_name, logprobs)
    return _Job(ids, _options(req, asked, logprobs, top), req.stream, req.include_usage(), shape)


class _GenerationResponse(StreamingResponse):
    """A StreamingResponse whose cleanup always runs, whether the body was sent, cut short by a
    disconnect, cancelled at the end of a drain, or never started. The cleanup is synchronous
    and quick: a cancelled task cannot reliably await anything in its finally."""

    def __init__(self, body: AsyncIterator[bytes], cleanup: Callable[[], None], **kw: Any) -> None:
        super().__init__(body, **kw)
        self._cleanup = cleanup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._cleanup()


async def _events(job: _Job, pump: Pump) -> AsyncIterator[bytes]:
    shape = job.shape
    extra: dict[str, Any] = {"usage": None} if job.include_usage else {}
    if shape.chat:
        yield sse({**shape.chunk(None, [], None, role=True), **extra})
    while True:
        piece, entries, error = await pump.next()
        if error is not None:  # headers are out: the error travels as an event
            log.error("stream failed: %s: %s", type(error).__name__, error)
            yield sse({"error": {"message": str(error), "type": "server_error", "param": None, "code": None}})
            break
        if piece is None:
            gen = pump.generation
            assert gen is not None  # the stream ended without an error
            yield sse({**shape.chunk(None, entries, gen.finish_reason), **extra})
            if job.include_usage:
                yield sse(shape.usage_chunk(gen))
            break
        yield sse({**shape.chunk(piece, entries, None), **extra})
    yield sse("[DONE]")


async def _collect(pump: Pump) -> Generation:
    while True:
        piece, _, error = await pump.next()
        if error is not None:
            raise error
        if piece is None:
            gen = pump.generation
            assert gen is not None
            return gen


async def _generate(
    state: ServerState, request: Request, kind: type[ChatRequest | CompletionRequest]
) -> Response:
    _check_auth(state, request)
    if state.draining:
        raise _unavailable("the server is shutting down")
    body = await _read_body(state, request)
    try:
        req = kind.model_validate_json(body, strict=True)
    except ValidationError as exc:
        message, param = error_param(exc)
        return error_response(400, message, param=param)
    if req.model != state.cfg.model_name:
        return error_response(
            400,
            f"the model {req.model!r} is not served here; this server serves {state.cfg.model_name!r}",
            param="model",
            code="model_not_found",
        )
    if not state.admit():
        raise _unavailable(f"the server is busy ({state.capacity} requests admitted); retry later")
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            state.release()

    try:
        job = await anyio.to_thread.run_sync(_prepare, state, req, limiter=state.limiter)
        # Submitting only queues the sequence: quick enough for the loop.
        pump = Pump(state.model, job.ids, job.options)
    except BaseException:
        release()
        raise
    if not job.stream:
        try:
            gen = await _collect(pump)
        finally:
            pump.cancel()  # a no-op unless the wait was cut short
            release()
        return JSONResponse(job.shape.full(gen))

    def cleanup() -> None:
        pump.cancel()
        release()

    return _GenerationResponse(
        _events(job, pump),
        cleanup,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# ---- routes ------------------------------------------------------------------------------
def _route(state: ServerState, name: str, handler: Callable[[Request], Awaitable[Response]]) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            response = await handler(request)
        except _Refused as refused:
            response = refused.response
        except PyrustmlError as exc:
            response = _library_error(exc)
        except Exception:  # the server outlives any request
            log.exception("unexpected error in %s", name)
            response = error_response(500, "internal server error", type_="server_error")
        state.counters.count(name, response.status_code)
        if state.cfg.instance is not None:
            response.headers["X-Pyrustml-Instance"] = state.cfg.instance
        return response

    return endpoint


def create_app(model: Model, cfg: ServeConfig) -> Starlette:
    """The ASGI app serving `model` under the name cfg.model_name. The app's state holds the
    ServerState (app.state.serve), which cli.py reads to drain on SIGTERM."""
    state = ServerState(model, cfg)

    async def chat(request: Request) -> Response:
        return await _generate(state, request, ChatRequest)

    async def completions(request: Request) -> Response:
        return await _generate(state, request, CompletionRequest)

    async def models(request: Request) -> Response:
        _check_auth(state, request)
        entry = {"id": cfg.model_name, "object": "model", "created": state.created, "owned_by": "pyrustml"}
        return JSONResponse({"object": "list", "data": [entry]})

    async def health(request: Request) -> Response:
        if state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics_route(request: Request) -> Response:
        _check_auth(state, request)
        body = await anyio.to_thread.run_sync(metrics.render, state.registry, limiter=state.limiter)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info("serving %s as %r (pid %d)", getattr(model, "directory", "?"), cfg.model_name, os.getpid())
        try:
            yield
        finally:
            if cfg.close_model:
                await anyio.to_thread.run_sync(model.close)

    routes = [
        Route("/v1/chat/completions", _route(state, "chat", chat), methods=["POST"]),
        Route("/v1/completions", _route(state, "completions", completions), methods=["POST"]),
        Route("/v1/models", _route(state, "models", models), methods=["GET"]),
        Route("/health", _route(state, "health", health), methods=["GET"]),
        Route("/metrics", _route(state, "metrics", metrics_route), methods=["GET"]),
    ]

    async def not_routed(request: Request, exc: Exception) -> Response:
        # Unknown paths and wrong methods answer in OpenAI's error shape too.
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "error"
        code = "not_found" if status == 404 else None
        return error_response(status, f"{request.method} {request.url.path}: {detail}", code=code)

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: not_routed})
    app.state.serve = state
    return app
