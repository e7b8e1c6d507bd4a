"""The JSON the service accepts and returns, validated by pydantic.

Events follow the events table of ``recsys.data.schema``: an ``event_type`` from
``EVENT_TYPES``, the fields ``EVENT_REQUIREMENTS`` names for that type, ids as non-negative
int64 and times as int64 Unix seconds. Numbers must be JSON numbers (``"5"`` is not an id, nor
``true``), unknown fields are refused so a misspelt field cannot pass unnoticed.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys.data.schema import EVENT_REQUIREMENTS, EVENT_TYPES
from recsys.ranking.events import NO_ID, SessionEvent
from recsys.serving.protocol import Recommendation

INT64_MAX = 2**63 - 1
MAX_EVENTS_PER_REQUEST = 10_000
K_MAX = 100

Id = Annotated[int, Field(ge=0, le=INT64_MAX)]
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


class EventIn(BaseModel):
    """One session event, as a row of the events table (``event_id`` not needed)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    ts: Id
    user_id: Id
    event_type: EventType
    session_id: Id | None = None
    streamer_id: Id | None = None
    product_id: Id | None = None
    dwell_s: Amount | None = None
    amount: Amount | None = None
    coupon_value: Amount | None = None
    comment: Annotated[str, Field(max_length=2000)] | None = None

    @model_validator(mode="after")
    def _type_requirements(self) -> EventIn:
        missing = [f for f in EVENT_REQUIREMENTS[self.event_type] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a {self.event_type!r} event requires field(s) {missing}")
        return self

    def to_event(self) -> SessionEvent:
        return SessionEvent.from_record(self.model_dump())


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[EventIn], Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)]


class RejectedOut(BaseModel):
    index: int  # position of the event in the posted batch
    reason: str  # every rule it breaks, as the offline quarantine words them


class IngestOut(BaseModel):
    accepted: int
    rejected: list[RejectedOut] = []


class ItemOut(BaseModel):
    kind: Literal["room", "product"]
    id: int
    score: float
    reasons: list[str]
    streamer_id: int | None = None  # the room (for a product, the room showing it)
    session_id: int | None = None


class RecommendationOut(BaseModel):
    user: int
    now: int
    k: int
    cold_start: bool
    items: list[ItemOut]
    personalised_reason: str | None = None  # e.g. the viewer withheld consent

    @classmethod
    def build(cls, rec: Recommendation, k: int) -> RecommendationOut:
        items = [
            ItemOut(
                kind=i.kind,
                id=i.id,
                score=i.score,
                reasons=list(i.reasons),
                streamer_id=None if i.streamer in (None, NO_ID) else i.streamer,
                session_id=None if i.session in (None, NO_ID) else i.session,
            )
            for i in rec.items
        ]
        return cls(user=rec.user, now=rec.now, k=k, cold_start=rec.cold_start, items=items,
                   personalised_reason=rec.personalised_reason)
