"""The recommendation HTTP service (FastAPI): ingest session events, serve live recommendations.

Endpoints::

    GET  /healthz                          {"status": "ok", "now": ..., recommender facts}
    POST /events    {"events": [...]}      {"accepted": n}
    GET  /recommend?user=U&k=10[&now=T][&kind=all|room|product]

Bad requests get a clear 4xx: malformed JSON 400; anything that fails validation (unknown
event type, a field the event type requires, an id out of int64 range, ``k`` outside
[1, 100], a user id that is not an integer) 422, each with ``messages`` naming the field.
An unknown user is not an error: they get the recommender's cold-start ranking with
``cold_start: true``. Whatever fails inside is logged and answered with a 500 JSON body; the
server keeps serving.

Recommendations and event ingestion run one at a time on one worker thread, in arrival order,
while the event loop parses, validates and answers. The work is Python and numpy under one
interpreter lock: requests run side by side on a thread pool only take turns on it, and
under load their switching (plus the math libraries' own threads) costs more CPU than the
requests themselves, which is how a server at 80% load tips into overload.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from recsys.serving.clock import WallClock
from recsys.serving.protocol import ITEM_KINDS, RecommenderService
from recsys.serving.schemas import (
    INT64_MAX,
    K_MAX,
    EventBatch,
    IngestOut,
    RecommendationOut,
)

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


def _install_error_handling(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _invalid(list(exc.errors()))

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
    title: str = "recsys live recommendations",
    worker_init: Callable[[], None] | None = None,
) -> FastAPI:
    """The service around one recommender; ``clock`` gives "now" when a request names none;
    ``worker_init`` runs first on the worker thread (e.g. to set its math thread counts)."""
    clock = clock or WallClock()
    worker = ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="recommender", initializer=worker_init
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        worker.shutdown(wait=True, cancel_futures=True)

    async def on_worker(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(worker, fn, *args)

    app = FastAPI(title=title, lifespan=lifespan)
    app.state.recommender, app.state.clock = recommender, clock
    _install_error_handling(app)

    @app.get("/healthz")
    def healthz() -> dict:
        now = clock()
        return {"status": "ok", "now": now, **recommender.health(now)}

    @app.post("/events", response_model=IngestOut)
    async def post_events(batch: EventBatch) -> IngestOut:
        events = [e.to_event() for e in batch.events]
        return IngestOut(accepted=await on_worker(recommender.ingest, events))

    @app.get("/recommend", response_model=RecommendationOut)
    async def recommend(
        user: Annotated[int, Query(ge=0, le=INT64_MAX, description="raw user id")],
        k: Annotated[int, Query(ge=1, le=K_MAX, description="items per kind")] = 10,
        now: Annotated[int | None, Query(ge=0, le=INT64_MAX, description="Unix seconds")] = None,
        kind: Literal["all", "room", "product"] = "all",
    ) -> RecommendationOut:
        kinds = ITEM_KINDS if kind == "all" else (kind,)
        at = clock() if now is None else now
        answer = await on_worker(recommender.recommend, user, at, k, kinds)
        return RecommendationOut.build(answer, k)

    return app
