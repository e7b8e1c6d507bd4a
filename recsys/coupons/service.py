"""The real-time coupon trigger in the HTTP service.

``attach_coupons(app, trigger)`` adds ``GET /coupon?user=U[&now=T]`` (the decision with its
reason code, ``trigger.HesitationTrigger``) to an app made by ``recsys.serving.create_app`` and
feeds the trigger every event the service accepts on ``POST /events`` (after the service's own
checks), so a click or cart posted there is what a later ``/coupon`` judges.
``load_trigger`` builds the trigger from a ``recsys-coupons`` run's ``coupon_model.pkl`` (the
model and the day's dual price) and a world's shelves (``trigger.shelf_prices``).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request

from recsys.coupons.trigger import HesitationTrigger, shelf_prices
from recsys.data.tables import LiveCommerceTables
from recsys.ranking.events import NO_ID, SessionEvent
from recsys.serving.schemas import INT64_MAX

router = APIRouter()


class _Tap:
    """The service's recommender, with every ingested event also shown to the trigger."""

    def __init__(self, inner, trigger: HesitationTrigger) -> None:
        self._inner, self._trigger = inner, trigger

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def ingest(self, events: Sequence[SessionEvent]) -> int:
        for e in events:
            product = e.product if e.product != NO_ID else -1
            self._trigger.observe(e.user, e.event_type, e.ts, product)
        return self._inner.ingest(events)


# A decision is a few dictionary look-ups (microseconds): it runs on the event loop, since a
# thread-pool hop would make it wait for the interpreter lock behind recommender work.
@router.get("/coupon")
async def coupon(
    request: Request,
    user: Annotated[int, Query(ge=0, le=INT64_MAX, description="raw user id")],
    now: Annotated[int | None, Query(ge=0, le=INT64_MAX, description="Unix seconds")] = None,
) -> dict:
    ctx = request.app.state.ctx
    at = ctx.clock() if now is None else now
    return request.app.state.coupons.decide(user, at).as_dict()


def attach_coupons(app: FastAPI, trigger: HesitationTrigger) -> FastAPI:
    ctx = app.state.ctx
    ctx.recommender = _Tap(ctx.recommender, trigger)
    app.state.coupons = trigger
    app.include_router(router)
    return app


def load_trigger(
    path: str | Path,
    tables: LiveCommerceTables,
    *,
    tier: str,
    budget: float,
    wait_s: int = 300,
    roi_floor: float = 1.0,
) -> HesitationTrigger:
    """The trigger over a ``recsys-coupons`` run's ``coupon_model.pkl``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"coupons: no model at {path} (a recsys-coupons run folder's "
                                f"coupon_model.pkl)")  # fmt: skip
    with open(path, "rb") as f:
        saved = pickle.load(f)
    price_of = shelf_prices(tables.showcase, tables.live_sessions, tables.products)
    return HesitationTrigger(saved["model"], tier, float(saved["lam"]), budget, price_of,
                             wait_s=wait_s, roi_floor=roi_floor)  # fmt: skip
