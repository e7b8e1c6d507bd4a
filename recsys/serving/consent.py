"""The service asks consent first: ``ConsentedService`` and ``POST /consent``.

A viewer who withheld ``personalisation`` (``recsys.privacy.consent``) gets what a viewer the
service knows nothing about gets: the ranking of a viewer with no history and no session
(``cold_start: true``), with the reason in the answer's ``personalised_reason``. Their events
are not folded into per-viewer state (sessions, the shared event log): they are counted on
``/healthz`` as ``events_without_consent`` instead, so nothing personal is kept for them.

``POST /consent {"user_id", "purpose", "granted", "channel"?, "ts"?}`` records a decision in
the book the service asks; the next request already sees it. With several worker processes
(``state.backend=redis``) the book is a ``recsys.privacy.shared_consent.SharedConsentBook``:
a decision posted to any worker is appended to one Redis list that every worker folds before
it answers, so the next request sees it whichever worker serves it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from recsys.privacy.consent import CHANNELS, PURPOSES, ConsentBook, Decision
from recsys.ranking.events import SessionEvent
from recsys.serving.protocol import ITEM_KINDS, Recommendation, RecommenderService

# A viewer id no table holds (the top of int64): its ranking is the no-history, no-session one.
ANONYMOUS_USER = 2**63 - 1
NO_CONSENT = "no consent to personalisation: the ranking every unknown viewer gets"


class ConsentedService(RecommenderService):
    """``inner`` behind the consent book: see the module notes."""

    def __init__(self, inner: RecommenderService, book: ConsentBook) -> None:
        self.inner, self.book = inner, book
        self.withheld_events = 0
        self._lock = threading.Lock()

    def recommend(
        self, user: int, now: int, k: int, kinds: Sequence[str] = ITEM_KINDS
    ) -> Recommendation:
        if self.book.allows(user, "personalisation"):
            return self.inner.recommend(user, now, k, kinds)
        anonymous = self.inner.recommend(ANONYMOUS_USER, now, k, kinds)
        return replace(anonymous, user=user, cold_start=True, personalised_reason=NO_CONSENT)

    def ingest(self, events: Sequence[SessionEvent]) -> int:
        users = sorted({e.user for e in events})
        allowed = dict(zip(users, self.book.allowed(users, "personalisation").tolist(),
                           strict=True))  # fmt: skip
        kept = [e for e in events if allowed[e.user]]
        with self._lock:
            self.withheld_events += len(events) - len(kept)
        return self.inner.ingest(kept) if kept else 0

    def health(self, now: int) -> dict:
        return {**self.inner.health(now), "events_without_consent": self.withheld_events,
                **self.book.describe()}  # fmt: skip


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: Annotated[int, Field(ge=0, le=2**63 - 1)]
    purpose: Literal[PURPOSES]  # type: ignore[valid-type]
    granted: bool
    channel: Literal[("",) + CHANNELS] = ""  # type: ignore[valid-type]
    ts: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None  # default: the service clock


router = APIRouter()


@router.post("/consent")
def post_consent(request: Request, body: ConsentIn) -> dict:
    ctx = request.app.state.ctx
    ts = ctx.clock() if body.ts is None else body.ts
    try:
        decision = Decision(body.user_id, body.purpose, body.granted, ts, body.channel)
    except ValueError as err:  # a channel on a purpose that has none
        raise HTTPException(status_code=422, detail=str(err)) from None
    request.app.state.consent.decide(decision)
    allowed = request.app.state.consent.allows(body.user_id, body.purpose, body.channel)
    return {"recorded": True, "user_id": body.user_id, "purpose": body.purpose,
            "channel": body.channel, "allowed": allowed, "ts": ts}  # fmt: skip


def attach_consent(app: FastAPI, book: ConsentBook) -> FastAPI:
    """Put ``book`` in front of the app's recommender and serve ``POST /consent``."""
    ctx = app.state.ctx
    ctx.recommender = ConsentedService(ctx.recommender, book)
    app.state.recommender = ctx.recommender
    app.state.consent = book
    app.include_router(router)
    return app
