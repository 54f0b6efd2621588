"""The OpenAI-compatible ASGI app (Starlette) over one Model.

The event loop never runs a forward pass or a tokenizer: every blocking Model call goes to a
worker thread (anyio.to_thread), and the engine batches the concurrent ones into shared steps.
A stream pulls one text piece per thread call, so a client that disconnects is noticed at its
next piece and its TextStream is closed (the engine frees the sequence at the next step).

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

from ..errors import ContextLengthError, OptionError, PromptError, PromptTypeError, PyrustmlError
from ..io.chat_template import ChatTemplateError
from . import metrics
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
        # Each admitted request holds at most one worker thread at a time; tokenizing and
        # metrics take a few more. anyio's default limiter (40) would cap concurrency below
        # a large --parallel.
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
    and never blocks: a cancelled task cannot await anything reliably in its finally."""

    def __init__(self, body: AsyncIterator[bytes], cleanup: Callable[[], None], **kw: Any) -> None:
        super().__init__(body, **kw)
        self._cleanup = cleanup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._cleanup()


def _pull(stream: Any, with_logprobs: bool, sent: int) -> tuple[str | None, list[Any]]:
    """The next text piece (None at the end) and the logprob entries that came with it."""
    try:
        piece: str | None = next(stream)
    except StopIteration:
        piece = None
    return piece, (stream.logprobs[sent:] if with_logprobs else [])


async def _events(
    state: ServerState, job: _Job, stream: Any, finished: threading.Event
) -> AsyncIterator[bytes]:
    shape = job.shape
    want_lp = bool(job.options["logprobs"])
    sent = 0
    extra: dict[str, Any] = {"usage": None} if job.include_usage else {}
    try:
        if shape.chat:
            yield sse({**shape.chunk(None, [], None, role=True), **extra})
        while True:
            # abandon_on_cancel: a disconnect or the end of a drain cancels this wait at once
            # (a shielded wait would defer the cancellation to a point this loop never reaches);
            # the cleanup then closes the stream, which ends the abandoned call at the next step.
            piece, entries = await anyio.to_thread.run_sync(
                _pull, stream, want_lp, sent, limiter=state.limiter, abandon_on_cancel=True
            )
            sent += len(entries)
            if piece is None:
                finished.set()
                break
            yield sse({**shape.chunk(piece, entries, None), **extra})
        gen: Generation = stream.generation
        rest = (gen.logprobs or [])[sent:] if want_lp else []
        yield sse({**shape.chunk(None, rest, gen.finish_reason), **extra})
        if job.include_usage:
            yield sse(shape.usage_chunk(gen))
    except PyrustmlError as exc:  # headers are out: the error travels as an event
        log.error("stream failed: %s: %s", type(exc).__name__, exc)
        yield sse({"error": {"message": str(exc), "type": "server_error", "param": None, "code": None}})
    yield sse("[DONE]")


def _collect(stream: Any) -> Generation:
    """Run a stream to its end in a worker thread."""
    for _ in stream:
        pass
    result: Generation = stream.generation
    return result


def _close_later(stream: Any) -> None:
    """Close a stream cut short (disconnect, drain deadline) from a thread of its own: a worker
    thread may be blocked in it, and neither the event loop nor a cancelled task may wait. The
    engine drops the sequence at its next step, which ends that blocked call."""
    threading.Thread(target=stream.close, name="pyrustml-serve-close", daemon=True).start()


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
        model = state.model
        stream = await anyio.to_thread.run_sync(
            lambda: model.stream(job.ids, **job.options), limiter=state.limiter
        )
    except BaseException:
        release()
        raise
    if not job.stream:
        gen = None
        try:
            gen = await anyio.to_thread.run_sync(
                _collect, stream, limiter=state.limiter, abandon_on_cancel=True
            )
        finally:
            if gen is None:
                _close_later(stream)
            release()
        return JSONResponse(job.shape.full(gen))

    finished = threading.Event()  # the stream ran to its end

    def cleanup() -> None:
        if not finished.is_set():
            _close_later(stream)
        release()

    return _GenerationResponse(
        _events(state, job, stream, finished),
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
