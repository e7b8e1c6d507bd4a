"""The recommendation HTTP service (FastAPI): ingest session events, serve live recommendations.

``create_app`` wires a ``RecommenderService`` into an app: the core routes
(``recsys.serving.routes``: /healthz, /events, /recommend, /metrics), admission control
(``recsys.serving.admission``), error handling, and one ``ServiceContext`` on
``app.state.ctx`` that any further router reads (``app.include_router(other_router)``).

Bad requests get a clear 4xx: malformed JSON 400; anything that fails typing (unknown event
type, a field the event type requires, an id out of int64 range, ``k`` outside [1, 100], a
user id that is not an integer) 422, each with ``messages`` naming the field; a body over the
size limit 413; a full queue 429 and a passed deadline 503, both with ``Retry-After``; with
``auth`` (``recsys.serving.auth``) a missing or wrong token 401, a token without the
endpoint's scope 403, a client over its rate 429. Events
that type but break a rule of ``recsys.data.validation.online`` are refused one by one in the
answer. An unknown user is not an error: they get the recommender's cold-start ranking with
``cold_start: true``. Whatever fails inside is logged and answered with a 500 JSON body; the
server keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from recsys.data.validation.online import OnlineEventChecker
from recsys.serving.admission import AdmissionConfig, AdmissionMiddleware, DeadlineExceeded
from recsys.serving.auth import AuthConfig, AuthMiddleware
from recsys.serving.clock import WallClock
from recsys.serving.protocol import RecommenderService
from recsys.serving.routes import router
from recsys.serving.runtime import ServiceContext

log = logging.getLogger(__name__)


def _invalid(errors: list[dict]) -> JSONResponse:
    """400 for JSON that does not parse, 422 for JSON (or a query) that does not validate."""
    status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
    detail = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type")}
        for e in errors
    ]
    messages = [f"{'.'.join(d['loc'])}: {d['msg']}" for d in detail]
    error = "malformed JSON" if status == 400 else "invalid request"
    return JSONResponse(
        status_code=status, content={"error": error, "messages": messages, "detail": detail}
    )


def _install_error_handling(app: FastAPI, ctx: ServiceContext) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _invalid(list(exc.errors()))

    @app.exception_handler(DeadlineExceeded)
    async def too_late(request: Request, exc: DeadlineExceeded) -> JSONResponse:
        ctx.metrics.reject("deadline")
        return JSONResponse(
            status_code=503,
            content={"error": "deadline exceeded", "detail": str(exc)},
            headers={"retry-after": str(ctx.admission.retry_after_s)},
        )

    @app.middleware("http")
    async def contain_errors(request: Request, call_next):
        try:
            return await call_next(request)
        except Exception as err:  # the server must outlive any request
            log.exception("error serving %s %s", request.method, request.url.path)
            return JSONResponse(
                status_code=500,
                content={"error": "internal error", "detail": type(err).__name__},
            )


def create_app(
    recommender: RecommenderService,
    *,
    clock: Callable[[], int] | None = None,
    checker: OnlineEventChecker | None = None,
    admission: AdmissionConfig | None = None,
    auth: AuthConfig | None = None,
    title: str = "recsys live recommendations",
    worker_init: Callable[[], None] | None = None,
) -> FastAPI:
    """The service around one recommender; ``clock`` gives "now" when a request names none;
    ``checker`` judges posted events against the tables the recommender started from (None:
    typing only); ``auth`` locks endpoints behind scoped tokens and rate limits (None: open);
    ``worker_init`` runs first on the worker thread (e.g. to set its math thread counts)."""
    ctx = ServiceContext(
        recommender=recommender,
        clock=clock or WallClock(),
        checker=checker,
        admission=admission or AdmissionConfig(),
        worker_init=worker_init,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        ctx.shutdown()

    app = FastAPI(title=title, lifespan=lifespan)
    app.state.ctx = ctx
    app.state.recommender, app.state.clock = recommender, ctx.clock
    _install_error_handling(app, ctx)
    app.include_router(router)
    # Added first, so admission wraps it: an over-size body is refused before its token is read.
    app.add_middleware(AuthMiddleware, config=auth or AuthConfig(), metrics=ctx.metrics)
    app.add_middleware(AdmissionMiddleware, config=ctx.admission, metrics=ctx.metrics)
    return app
