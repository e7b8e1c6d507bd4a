"""Most-popular baseline: every user gets the same ranking by interaction count.

With ``window`` the counts come from the last ``window`` units of the training timeline
(``UserSequences.ts``: seconds for timestamped data, positions when a dataset only has an
order), which follows trends. Items unseen in the window are still ordered among themselves
by all-time popularity: half the all-time share (< 0.5, so float32 rounding cannot reach the
next integer) is added to the integer window counts; it breaks ties without ever overturning a
window count.
"""

from __future__ import annotations

import numpy as np

from recsys.baselines._history import check_users, item_counts
from recsys.core import Recommender
from recsys.data.interactions import ItemFeatures, UserSequences


class Popularity(Recommender):
    """Score = number of training interactions with the item (optionally in a recent window)."""

    name = "popularity"

    def __init__(self, *, window: int | None = None) -> None:
        if window is not None and window <= 0:
            raise ValueError(f"Popularity: window must be positive or None, got {window}")
        self.window = window
        self.scores_: np.ndarray | None = None  # (n_items,) float32

    def fit(self, train: UserSequences, *, item_features: ItemFeatures | None = None) -> Popularity:
        all_time = item_counts(train)
        if self.window is None:
            scores = all_time
        else:
            scores = self._window_counts(train) + 0.5 * all_time / (all_time.sum() + 1.0)
        self.scores_ = scores.astype(np.float32)
        return self

    def _window_counts(self, train: UserSequences) -> np.ndarray:
        if len(train.ts) == 0:
            return np.zeros(train.n_items, dtype=np.float64)
        recent = train.ts > train.ts.max() - self.window
        return np.bincount(train.items[recent], minlength=train.n_items).astype(np.float64)

    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        if self.scores_ is None:
            raise RuntimeError("Popularity: call fit before score")
        users = check_users(users, history, len(self.scores_), self.name)
        return np.tile(self.scores_, (len(users), 1))  # (B, n_items)

    def hparams(self) -> dict:
        return {"window": self.window}
