"""Item-based nearest neighbours with shrunk cosine similarity (Sarwar et al. 2001 style).

Similarity between items i and j from the binary user x item training matrix X:

    c_ij = (X^T X)_ij                      users who interacted with both
    s_ij = c_ij / (n_i^alpha * n_j^(1 - alpha) + shrink)

``alpha = 0.5`` is the cosine, ``sqrt(n_i n_j)``; other values give the asymmetric cosine.
The shrink term pulls similarities resting on few co-occurrences towards zero. Each row i
keeps only its ``k_neighbours`` largest entries, and a user's score for item j is the
(optionally recency-weighted) sum of s_ij over the history items i. The co-occurrence matrix
is built and pruned in blocks of rows, so memory stays near the size of the pruned result.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.baselines._history import check_users, history_matrix, training_matrix
from recsys.core import Recommender
from recsys.data.interactions import ItemFeatures, UserSequences


class ItemKNN(Recommender):
    """Sparse item-item similarity, top-k pruned per item; score = history x similarity."""

    name = "item_knn"

    def __init__(
        self,
        *,
        k_neighbours: int = 100,
        shrink: float = 50.0,
        alpha: float = 0.5,
        recency_half_life: float | None = None,
        block_size: int = 2048,
    ) -> None:
        if k_neighbours < 1:
            raise ValueError(f"ItemKNN: k_neighbours must be >= 1, got {k_neighbours}")
        if shrink < 0:
            raise ValueError(f"ItemKNN: shrink must be >= 0, got {shrink}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"ItemKNN: alpha must lie in [0, 1], got {alpha}")
        self.k_neighbours = k_neighbours
        self.shrink = shrink
        self.alpha = alpha
        self.recency_half_life = recency_half_life
        self.block_size = block_size
        self.similarity_: sp.csr_matrix | None = None  # (n_items, n_items) float32

    def fit(self, train: UserSequences, *, item_features: ItemFeatures | None = None) -> ItemKNN:
        x = training_matrix(train)  # (U, I)
        xt = x.T.tocsr()  # (I, U)
        n = np.asarray(x.sum(axis=0), dtype=np.float64).ravel()  # users per item
        blocks = []
        for start in range(0, train.n_items, self.block_size):
            stop = min(start + self.block_size, train.n_items)
            co = (xt[start:stop] @ x).tocsr()  # (b, I) co-occurrence counts
            blocks.append(self._prune(co, start, n))
        self.similarity_ = sp.vstack(blocks, format="csr")
        return self

    def _prune(self, co: sp.csr_matrix, start: int, n: np.ndarray) -> sp.csr_matrix:
        """Shrunk similarities of one row block, without the diagonal, top-k per row."""
        co.sort_indices()
        rows = np.repeat(np.arange(co.shape[0], dtype=np.int64), np.diff(co.indptr))
        cols = co.indices.astype(np.int64)
        off_diag = cols != rows + start
        rows, cols = rows[off_diag], cols[off_diag]
        denom = n[rows + start] ** self.alpha * n[cols] ** (1.0 - self.alpha) + self.shrink
        sim = co.data[off_diag].astype(np.float64) / denom
        order = np.lexsort((-sim, rows))  # by row, then similarity descending
        rows, cols, sim = rows[order], cols[order], sim[order]
        first = np.searchsorted(rows, rows, side="left")
        keep = (np.arange(len(rows)) - first < self.k_neighbours) & (sim > 0)
        pruned = sp.csr_matrix(
            (sim[keep].astype(np.float32), (rows[keep], cols[keep])), shape=co.shape
        )
        pruned.sort_indices()
        return pruned

    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        if self.similarity_ is None:
            raise RuntimeError("ItemKNN: call fit before score")
        users = check_users(users, history, self.similarity_.shape[0], self.name)
        h = history_matrix(history, users, half_life=self.recency_half_life)  # (B, I)
        return np.asarray((h @ self.similarity_).toarray(), dtype=np.float32)

    def hparams(self) -> dict:
        return {
            "k_neighbours": self.k_neighbours,
            "shrink": self.shrink,
            "alpha": self.alpha,
            "recency_half_life": self.recency_half_life,
        }
