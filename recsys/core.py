"""The interfaces every layer programs against: ``Recommender`` for evaluation and
benchmarks, ``EmbeddingRecommender`` for retrieval indexes, ``RequestScorer`` for serving.

A recommender fits on training sequences and scores the whole catalogue for a batch of users
given their history. Evaluation, not the model, removes seen items, restricts to available
candidates and takes the top k, so every model is judged by identical code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from recsys.data.interactions import ItemFeatures, UserSequences


class Recommender(ABC):
    """Fit on interactions; score items for users."""

    name: str = "recommender"

    @abstractmethod
    def fit(
        self, train: UserSequences, *, item_features: ItemFeatures | None = None
    ) -> Recommender:
        """Learn from ``train`` (rows are users, chronological items)."""

    @abstractmethod
    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        """Scores (len(users), n_items) float32, higher is better, for the given user indices.

        ``history`` holds every user's known interactions at scoring time (train for validation,
        train + validation for test); models that condition on history read rows from it.
        """

    def hparams(self) -> dict:
        """The hyperparameters that define this instance (printed and saved by benchmarks)."""
        return {}


@runtime_checkable
class EmbeddingRecommender(Protocol):
    """A recommender whose scores are inner products with per-entity vectors, which can
    therefore be indexed for retrieval (``recsys-index``) and shown in a projector."""

    def candidate_embeddings(self, head: str | None = None, at: int | None = None) -> np.ndarray:
        """(n_entities, d) float32 vectors of every entity of ``head`` (rows 0 and 1 reserved),
        as of time ``at`` where candidates change over time (a room and what it shows)."""


@runtime_checkable
class RequestScorer(Protocol):
    """What serving needs of a trained model: (user, time) requests scored against candidate
    vectors, one head at a time. ``batch`` is the model's own request batch."""

    head: str

    def for_head(self, head: str) -> RequestScorer:
        """A view scoring another head of the same trained model."""

    def n_entities(self) -> int:
        """Rows of this head's vocabulary (padding and unknown included)."""

    def request_batch(self, users: np.ndarray, ts: np.ndarray) -> Any:
        """Query features of requests (user codes, times), each from what came before it."""

    def head_queries(self, batch: Any, heads: Sequence[str]) -> dict[str, np.ndarray]:
        """(Q, d) query vectors of a request batch for each of ``heads``."""

    def request_queries(self, batch: Any) -> np.ndarray:
        """(Q, d) query vectors of this head."""

    def request_bonus(self, batch: Any, ids: np.ndarray) -> np.ndarray:
        """(Q, C) score added to the inner product for candidate codes ``ids``."""

    def request_history(self, batch: Any, row: int = 0) -> np.ndarray:
        """Codes of this head's entities in one request's recent history."""

    def request_scores(self, users: np.ndarray, ts: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """(Q, C) scores of candidate codes ``ids`` for (user, time) requests."""

    def entity_vectors(self, ids: np.ndarray, at: int) -> np.ndarray:
        """(C, d) candidate vectors of codes ``ids`` as of time ``at``."""
