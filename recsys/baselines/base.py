"""The one interface every recommender offers to evaluation and benchmarks.

A recommender fits on training sequences and scores the whole catalogue for a batch of users
given their history. Evaluation, not the model, removes seen items, restricts to available
candidates and takes the top k, so every model is judged by identical code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

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
