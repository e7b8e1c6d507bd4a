"""Content-based baseline: recommend items that look like what the user interacted with.

Every item becomes one sparse unit vector made of equal-weight blocks:

- one one-hot block per categorical feature (category, brand, imported, ...; code 0 = missing);
- one one-hot block per numeric feature, over ``n_bands`` quantile bands (price bands); a
  feature banded exactly like an earlier one (log price after price) is skipped;
- a tf-idf block of the item's tokens (keywords, genres), scaled by ``token_weight``.

Each block has unit norm (or is empty when the item lacks the feature), and the whole row is
then normalised. A user's profile is the recency-weighted mean of their history item vectors;
an item's score is the cosine between profile and item plus ``popularity_weight`` times the
item's log-popularity share, which orders items the features cannot tell apart.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.baselines._history import check_users, history_matrix, item_counts
from recsys.core import Recommender
from recsys.data.interactions import ItemFeatures, UserSequences


def _row_normalise(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ matrix


def one_hot(codes: np.ndarray, feature: str) -> sp.csr_matrix:
    """(n_items, n_distinct) indicator of each item's code; code 0 (missing) gives an empty row."""
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer) or (codes < 0).any():
        raise ValueError(f"item features: categorical {feature!r} must hold integer codes >= 0")
    present = np.flatnonzero(codes > 0)
    distinct, column = np.unique(codes[present], return_inverse=True)
    data = np.ones(len(present), dtype=np.float64)
    return sp.csr_matrix((data, (present, column)), shape=(len(codes), len(distinct)))


def quantile_bands(values: np.ndarray, n_bands: int) -> np.ndarray:
    """Band code 1..n_bands by quantiles of the finite values; 0 for NaN (missing)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    codes = np.zeros(len(values), dtype=np.int64)
    if finite.any():
        inner = np.linspace(0.0, 1.0, n_bands + 1)[1:-1]
        edges = np.unique(np.quantile(values[finite], inner))
        codes[finite] = np.searchsorted(edges, values[finite], side="right") + 1
    return codes


def tfidf(tokens: sp.csr_matrix) -> sp.csr_matrix:
    """Smoothed tf-idf, idf = ln((1 + N) / (1 + df)) + 1 over the N items with tokens, rows unit."""
    tokens = sp.csr_matrix(tokens, dtype=np.float64)
    n_docs = int((np.diff(tokens.indptr) > 0).sum())
    df = np.bincount(tokens.indices, minlength=tokens.shape[1])
    idf = np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
    return _row_normalise(tokens @ sp.diags(idf))


def item_vectors(
    features: ItemFeatures, n_items: int, *, n_bands: int, token_weight: float
) -> sp.csr_matrix:
    """(n_items, n_columns) unit rows built from the features' blocks (see module docstring)."""
    blocks = []
    for name in sorted(features.categorical):
        _check_length(features.categorical[name], n_items, f"categorical {name!r}")
        blocks.append(one_hot(features.categorical[name], name))
    banded: set[bytes] = set()
    for name in sorted(features.numeric):
        _check_length(features.numeric[name], n_items, f"numeric {name!r}")
        bands = quantile_bands(features.numeric[name], n_bands)
        if bands.tobytes() in banded:
            continue  # a monotone transform of an earlier feature (log price) adds nothing
        banded.add(bands.tobytes())
        blocks.append(one_hot(bands, name))
    if features.tokens is not None and token_weight > 0:
        _check_length(features.tokens, n_items, "tokens")
        blocks.append(token_weight * tfidf(features.tokens))
    if not blocks:
        raise ValueError("item features: no categorical, numeric or token features to use")
    return _row_normalise(sp.hstack(blocks, format="csr")).tocsr()


def _check_length(values: np.ndarray | sp.spmatrix, n_items: int, what: str) -> None:
    if values.shape[0] != n_items:
        raise ValueError(
            f"item features: {what} has {values.shape[0]} rows, training data has {n_items} items"
        )


class ContentBased(Recommender):
    """Cosine between a recency-weighted feature profile and each item, plus a popularity prior."""

    name = "content_based"

    def __init__(
        self,
        *,
        recency_half_life: float | None = 10.0,
        popularity_weight: float = 0.05,
        n_bands: int = 5,
        token_weight: float = 1.0,
    ) -> None:
        if n_bands < 1:
            raise ValueError(f"ContentBased: n_bands must be >= 1, got {n_bands}")
        self.recency_half_life = recency_half_life
        self.popularity_weight = popularity_weight
        self.n_bands = n_bands
        self.token_weight = token_weight
        self.vectors_: sp.csr_matrix | None = None  # (n_items, n_columns) float64, unit rows
        self.prior_: np.ndarray | None = None  # (n_items,) float32

    def fit(
        self, train: UserSequences, *, item_features: ItemFeatures | None = None
    ) -> ContentBased:
        if item_features is None:
            raise ValueError("ContentBased: fit needs item_features")
        self.vectors_ = item_vectors(
            item_features, train.n_items, n_bands=self.n_bands, token_weight=self.token_weight
        )
        log_counts = np.log1p(item_counts(train))
        share = log_counts / max(log_counts.max(), 1e-12)
        self.prior_ = (self.popularity_weight * share).astype(np.float32)
        return self

    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        if self.vectors_ is None:
            raise RuntimeError("ContentBased: call fit before score")
        users = check_users(users, history, self.vectors_.shape[0], self.name)
        weights = history_matrix(history, users, half_life=self.recency_half_life)  # (B, I)
        profile = (weights @ self.vectors_).toarray()  # (B, n_columns); the mean's scale cancels
        norms = np.linalg.norm(profile, axis=1, keepdims=True)
        profile /= np.where(norms > 0, norms, 1.0)
        cosine = (self.vectors_ @ profile.T).T  # (B, I)
        return np.ascontiguousarray(cosine + self.prior_, dtype=np.float32)

    def hparams(self) -> dict:
        return {
            "recency_half_life": self.recency_half_life,
            "popularity_weight": self.popularity_weight,
            "n_bands": self.n_bands,
            "token_weight": self.token_weight,
        }
