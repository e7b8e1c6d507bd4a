"""The service's core endpoints, as a router over the ``ServiceContext`` of ``app.state.ctx``.

::

    GET  /healthz                          {"status": "ok", "now": ..., recommender facts, counts}
    POST /events    {"events": [...]}      {"accepted": n, "rejected": [{"index", "reason"}]}
    GET  /recommend?user=U&k=10[&now=T][&kind=all|room|product]
    GET  /metrics                          Prometheus text format

A posted batch is answered per event: events that break a rule of
``recsys.data.validation.online`` are listed with their index in the batch and every reason,
the others are applied. The batch as a whole is 200 unless it does not parse or type.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from recsys.serving.protocol import ITEM_KINDS
from recsys.serving.schemas import (
    INT64_MAX,
    K_MAX,
    EventBatch,
    IngestOut,
    RecommendationOut,
    RejectedOut,
)

router = APIRouter()


@router.get("/healthz")
def healthz(request: Request) -> dict:
    ctx = request.app.state.ctx
    now = ctx.clock()
    facts = ctx.recommender.health(now)
    return {"status": "ok", "now": now, **facts, "worker_pid": os.getpid(), **ctx.metrics.summary()}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> PlainTextResponse:
    text = request.app.state.ctx.metrics.render()
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.post("/events", response_model=IngestOut)
async def post_events(request: Request, batch: EventBatch) -> IngestOut:
    ctx = request.app.state.ctx
    records = [e.model_dump(exclude_none=True) for e in batch.events]
    result = await ctx.run(request, ctx.ingest, records, ctx.clock())
    return IngestOut(
        accepted=len(result.accepted),
        rejected=[RejectedOut(index=r.index, reason=r.reason) for r in result.rejected],
    )


@router.get("/recommend", response_model=RecommendationOut)
async def recommend(
    request: Request,
    user: Annotated[int, Query(ge=0, le=INT64_MAX, description="raw user id")],
    k: Annotated[int, Query(ge=1, le=K_MAX, description="items per kind")] = 10,
    now: Annotated[int | None, Query(ge=0, le=INT64_MAX, description="Unix seconds")] = None,
    kind: Literal["all", "room", "product"] = "all",
) -> RecommendationOut:
    ctx = request.app.state.ctx
    kinds = ITEM_KINDS if kind == "all" else (kind,)
    at = ctx.clock() if now is None else now
    answer = await ctx.run(request, ctx.recommender.recommend, user, at, k, kinds)
    return RecommendationOut.build(answer, k)
