"""The reward server's FastAPI app (layer L3): thin routes over one scorer and one Batcher.

Routes: ``POST /score`` (native), ``POST /get_reward`` (OpenRLHF remote RM), ``GET /health``,
``GET /info``. Wire formats: ``codescaler.server.protocol``.

A request goes through, in this order: the body's size (``max_body_bytes``: by ``Content-Length`` before
anything is read, and by counting the bytes of every chunk as they arrive, so a chunked body without a
length is cut off at the limit too); then, in a worker thread (never on the event loop, which keeps
answering ``/health`` and other clients): JSON decoding and validation, the item-count and per-item
character limits, and for ``/get_reward`` the chat-template split (linear time); then the Batcher, which
feeds large requests to the model in chunks of ``max_batch`` items.

Status codes: 200; 413 when the body is over ``max_body_bytes``, a request has more items than
``max_items_per_request`` or an item more characters than ``max_chars_per_item`` (the message names the
limit); 422 for malformed bodies (the message names the field, e.g. ``items.2.response``); 503 with
``Retry-After`` when the scoring queue is full or the server is shutting down, and without it when the
scoring worker has stopped (``/health`` then answers 503 ``"dead"``); 500 for our own faults (logged with
traceback, payload never logged). Every error body is ``{"error": "<one line>", ...}``, 400/404/405
included. Logs at INFO never contain prompts or responses.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any, TypeVar

from codescaler.errors import InputError
from codescaler.extras import MissingExtra

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ModuleNotFoundError as err:  # installed without the [server] extra: one line naming it
    raise MissingExtra("server", err.name or "fastapi") from err

from codescaler import __version__
from codescaler.integrations import ScoresResponses
from codescaler.integrations.openrlhf import split_queries
from codescaler.records import Score
from codescaler.server.batcher import Batcher, BatcherStopped, Overloaded, ShuttingDown
from codescaler.server.protocol import (
    BodyInvalid,
    RewardRequest,
    RewardResponse,
    ScoreRequest,
    ScoreResponse,
    decode_body,
)
from codescaler.server.settings import ServerSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Answers with more items than this are serialised in a worker thread (json.dumps of 65,536 items x 4
# lists takes ~0.1 s, too long for the event loop); smaller ones inline, where the thread hop would cost
# more than the work.
_INLINE_RESPONSE_ITEMS = 256


def _render(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("utf-8")


class _TooLarge(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _error(status: int, message: str, headers: dict[str, str] | None = None,
           detail: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


class _BodyLimit:
    """Pure ASGI middleware: refuse a body over ``max_bytes`` with 413 before the route sees all of it.

    ``Content-Length`` is checked before anything is read; without it (chunked transfer) the bytes of
    every ``http.request`` message are counted as they arrive and reading stops at the limit."""

    class Exceeded(Exception):
        pass

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self, size: str) -> str:
        return f"request body of {size} bytes exceeds max_body_bytes={self.max_bytes}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > self.max_bytes:
            await _error(413, self._message(length))(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyLimit.Exceeded
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _BodyLimit.Exceeded:
            if started:
                raise
            await _error(413, self._message(f"more than {self.max_bytes}"))(scope, receive, send)


def create_app(scorer: ScoresResponses, settings: ServerSettings | None = None) -> FastAPI:
    """The app for ``scorer`` (any object with ``score`` and ``info``); the Batcher starts with the app's
    lifespan and drains on shutdown."""
    settings = settings or ServerSettings()
    settings.validate()

    def score_fn(prompts: list[str], responses: list[str], languages: list[str | None]) -> list[Score]:
        return scorer.score(prompts, responses, languages)

    batcher = Batcher(score_fn, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                      max_queue=settings.max_queue, retry_after_s=settings.retry_after_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        logger.info("reward server ready (max_batch=%d, max_wait_ms=%g)", settings.max_batch, settings.max_wait_ms)
        try:
            yield
        finally:
            logger.info("draining the scoring queue (%d requests waiting)", batcher.queued)
            await batcher.close(settings.drain_timeout_s)
            logger.info("reward server stopped after %d batches, %d items", batcher.batches, batcher.items_scored)

    app = FastAPI(title="codescaler reward server", version=__version__, lifespan=lifespan)
    app.state.batcher = batcher
    app.state.settings = settings
    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)
    retry = {"Retry-After": f"{max(1, round(settings.retry_after_s))}"}

    def invalid(errors: list[dict[str, Any]]) -> JSONResponse:
        detail = errors[:20]
        first = detail[0] if detail else {"field": "body", "message": "invalid request"}
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return _error(422, f"field {first['field']!r}: {first['message']}{more}", detail=detail)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid([{"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body",
                         "message": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in exc.errors()])

    @app.exception_handler(BodyInvalid)
    async def on_body_invalid(request: Request, exc: BodyInvalid) -> JSONResponse:
        return invalid(exc.errors)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # 400/404/405 from routing: the documented shape, not Starlette's {"detail": ...}.
        return _error(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    @app.exception_handler(_TooLarge)
    async def on_too_large(request: Request, exc: _TooLarge) -> JSONResponse:
        return _error(413, exc.message)

    @app.exception_handler(InputError)
    async def on_input_error(request: Request, exc: InputError) -> JSONResponse:
        return _error(422, exc.render())

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        # Our fault: keep the traceback in the log (it carries no request payload), answer one line.
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); see the server log")

    @app.exception_handler(Overloaded)
    async def on_overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        return _error(503, str(exc), headers=retry)

    @app.exception_handler(ShuttingDown)
    async def on_shutdown(request: Request, exc: ShuttingDown) -> JSONResponse:
        return _error(503, str(exc), headers=retry)

    @app.exception_handler(BatcherStopped)
    async def on_stopped(request: Request, exc: BatcherStopped) -> JSONResponse:
        return _error(503, f"the scoring worker has stopped ({exc}); restart the server")

    def check_count(count: int) -> None:
        if count > settings.max_items_per_request:
            raise _TooLarge(f"{count} items exceed max_items_per_request={settings.max_items_per_request}; "
                            "split the request")

    def check_chars(field: str, sizes: Sequence[int]) -> None:
        for i, size in enumerate(sizes):
            if size > settings.max_chars_per_item:
                raise _TooLarge(f"{field}.{i} has {size} characters, over "
                                f"max_chars_per_item={settings.max_chars_per_item}")

    def prepare_score(body: bytes) -> ScoreRequest:
        request = decode_body(ScoreRequest, body)
        check_count(len(request.items))
        check_chars("items", [len(item.prompt) + len(item.response) for item in request.items])
        return request

    def prepare_reward(body: bytes) -> tuple[list[str], list[str]]:
        request = decode_body(RewardRequest, body)
        check_count(len(request.query))
        # Sizes before parsing: the template split is linear, but it should never see what we refuse.
        check_chars("query", [len(q) for q in request.query])
        if request.prompts is not None:
            check_chars("prompts", [len(p) for p in request.prompts])
        problems, responses = split_queries(request.query, request.prompts)
        check_chars("query", [len(p) + len(r) for p, r in zip(problems, responses, strict=True)])
        return problems, responses

    async def answer(payload: dict[str, Any], items: int) -> Response:
        content = _render(payload) if items <= _INLINE_RESPONSE_ITEMS else await asyncio.to_thread(_render, payload)
        return Response(content, media_type="application/json")

    async def off_loop(fn: Callable[[bytes], T], request: Request) -> T:
        return await asyncio.to_thread(fn, await request.body())

    @app.get("/health")
    async def health() -> JSONResponse:
        if batcher.failure is not None:
            return JSONResponse({"status": "dead", "queued": batcher.queued,
                                 "error": f"the scoring worker has stopped ({batcher.failure}); restart the server"},
                                status_code=503)
        return JSONResponse({"status": "ok", "queued": batcher.queued})

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return {**scorer.info, "server_version": __version__, "limits": asdict(settings),
                "batches": batcher.batches, "items_scored": batcher.items_scored,
                "failed_batches": batcher.failed_batches}

    @app.post("/score", response_model=ScoreResponse)
    async def score(request: Request) -> Response:
        body = await off_loop(prepare_score, request)
        scores = await batcher.submit([item.prompt for item in body.items], [item.response for item in body.items],
                                      [item.language for item in body.items])
        return await answer({"rewards": [s.reward for s in scores], "raw_scores": [s.raw_score for s in scores],
                             "valid": [s.valid for s in scores]}, len(scores))

    @app.post("/get_reward", response_model=RewardResponse)
    async def get_reward(request: Request) -> Response:
        problems, responses = await off_loop(prepare_reward, request)
        scores = await batcher.submit(problems, responses, None)
        rewards = [s.reward for s in scores]
        return await answer({"rewards": rewards, "scores": rewards, "extra_logs": {
            "valid": [1.0 if s.valid else 0.0 for s in scores],
            "raw_score": [s.raw_score if s.raw_score is not None else 0.0 for s in scores],
        }}, len(scores))

    return app
