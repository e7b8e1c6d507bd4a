"""What the HTTP service needs from a recommender, so any pipeline can plug in.

The service only speaks raw ids and times: ``recommend`` ranks what is live for one viewer at
one moment, ``ingest`` folds new session events in. The fallback in
``recsys.serving.popularity`` implements it from the tables alone; a trained pipeline
(retrieval + ranker) implements the same two methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from recsys.ranking.events import SessionEvent

ItemKind = Literal["room", "product"]
ITEM_KINDS: tuple[str, ...] = ("room", "product")


@dataclass(frozen=True)
class RecommendedItem:
    """A live room (``id`` = streamer id, ``session`` = its live session) or a product (``id``
    = product id, ``streamer`` / ``session`` = the live room showing it)."""

    kind: str
    id: int
    score: float
    reasons: tuple[str, ...]
    streamer: int | None = None
    session: int | None = None


@dataclass(frozen=True)
class Recommendation:
    """Up to ``k`` items per requested kind, each kind ranked best first."""

    user: int
    now: int
    cold_start: bool  # the recommender knows nothing of this viewer beyond the live session
    items: list[RecommendedItem] = field(default_factory=list)
    personalised_reason: str | None = None  # why the ranking is not personal (None: it is)


def check_request(k: int, kinds: Sequence[str]) -> None:
    """The arguments every ``RecommenderService.recommend`` accepts."""
    unknown = [kind for kind in kinds if kind not in ITEM_KINDS]
    if unknown or k < 1:
        raise ValueError(f"recommend: kinds must be among {ITEM_KINDS} and k >= 1")


class RecommenderService(ABC):
    """A recommender behind the HTTP service; implementations must be thread-safe."""

    @abstractmethod
    def recommend(
        self, user: int, now: int, k: int, kinds: Sequence[str] = ITEM_KINDS
    ) -> Recommendation:
        """Rank the rooms and products live at ``now`` for ``user`` (any int64 user id:
        unknown viewers get a cold-start ranking, flagged, never an error)."""

    @abstractmethod
    def ingest(self, events: Sequence[SessionEvent]) -> int:
        """Fold already-validated events into live state; returns how many were taken."""

    def health(self, now: int) -> dict:
        """Facts worth showing on /healthz (counts, versions); no secrets, no heavy work."""
        return {}
