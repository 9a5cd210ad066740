"""The reward server's FastAPI app (layer L3): thin routes over one scorer and one Batcher.

Routes: ``POST /score`` (native), ``POST /get_reward`` (OpenRLHF remote RM), ``GET /health``,
``GET /info``. Wire formats: ``codescaler.server.protocol``.

Status codes: 200; 413 when a request has more items than ``max_items_per_request``, an item more
characters than ``max_chars_per_item`` or the body more bytes than ``max_body_bytes`` (the message names
the limit); 422 for malformed bodies (the message names the field, e.g. ``items.2.response``); 503 with
``Retry-After`` when the scoring queue is full or the server is shutting down; 500 for our own faults
(logged with traceback, payload never logged). Logs at INFO never contain prompts or responses.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from codescaler import __version__
from codescaler.errors import InputError
from codescaler.integrations import ScoresResponses
from codescaler.integrations.openrlhf import split_queries
from codescaler.records import Score
from codescaler.server.batcher import Batcher, Overloaded, ShuttingDown
from codescaler.server.protocol import RewardRequest, RewardResponse, ScoreRequest, ScoreResponse

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerSettings:
    """Limits and batching of one server; defaults suit an RL trainer posting a rollout batch."""

    max_batch: int = 64                 # items per model call (the Scorer splits it into batch_size)
    max_wait_ms: float = 5.0            # how long the first request of a batch waits for company
    max_items_per_request: int = 512
    max_chars_per_item: int = 200_000   # prompt + response characters
    max_body_bytes: int = 64 * 1024 * 1024
    max_queue: int = 1024               # waiting requests before 503
    retry_after_s: float = 1.0
    drain_timeout_s: float = 60.0

    def check(self) -> None:
        """Raise ``InputError`` naming the first setting out of range."""
        for name in ("max_batch", "max_items_per_request", "max_chars_per_item", "max_body_bytes", "max_queue"):
            if getattr(self, name) < 1:
                raise InputError(f"must be >= 1, got {getattr(self, name)}", field=name.replace("_", "-"))
        if self.max_wait_ms < 0:
            raise InputError(f"must be >= 0, got {self.max_wait_ms}", field="max-wait-ms")


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


def _field_path(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def create_app(scorer: ScoresResponses, settings: ServerSettings | None = None) -> FastAPI:
    """The app for ``scorer`` (any object with ``score`` and ``info``); the Batcher starts with the app's
    lifespan and drains on shutdown."""
    settings = settings or ServerSettings()
    settings.check()

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
    retry = {"Retry-After": f"{max(1, round(settings.retry_after_s))}"}

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
            return _error(413, f"request body of {length} bytes exceeds max_body_bytes={settings.max_body_bytes}")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        detail = [{"field": _field_path(e.get("loc", ())), "message": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in errors[:20]]
        first = detail[0] if detail else {"field": "body", "message": "invalid request"}
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return _error(422, f"field {first['field']!r}: {first['message']}{more}", detail=detail)

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

    def check_limits(prompts: Sequence[str], responses: Sequence[str], field: str) -> None:
        if len(prompts) > settings.max_items_per_request:
            raise _TooLarge(f"{len(prompts)} items exceed max_items_per_request={settings.max_items_per_request}; "
                            "split the request")
        for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
            if len(p) + len(r) > settings.max_chars_per_item:
                raise _TooLarge(f"{field}.{i} has {len(p) + len(r)} characters, over "
                                f"max_chars_per_item={settings.max_chars_per_item}")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "queued": batcher.queued}

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return {**scorer.info, "server_version": __version__, "limits": asdict(settings),
                "batches": batcher.batches, "items_scored": batcher.items_scored}

    @app.post("/score", response_model=ScoreResponse)
    async def score(body: ScoreRequest) -> ScoreResponse:
        prompts = [item.prompt for item in body.items]
        responses = [item.response for item in body.items]
        check_limits(prompts, responses, "items")
        scores = await batcher.submit(prompts, responses, [item.language for item in body.items])
        return ScoreResponse(rewards=[s.reward for s in scores], raw_scores=[s.raw_score for s in scores],
                             valid=[s.valid for s in scores])

    @app.post("/get_reward", response_model=RewardResponse)
    async def get_reward(body: RewardRequest) -> RewardResponse:
        if len(body.query) > settings.max_items_per_request:
            check_limits(body.query, [""] * len(body.query), "query")
        problems, responses = split_queries(body.query, body.prompts)
        check_limits(problems, responses, "query")
        scores = await batcher.submit(problems, responses, None)
        rewards = [s.reward for s in scores]
        return RewardResponse(rewards=rewards, scores=rewards, extra_logs={
            "valid": [1.0 if s.valid else 0.0 for s in scores],
            "raw_score": [s.raw_score if s.raw_score is not None else 0.0 for s in scores],
        })

    return app
