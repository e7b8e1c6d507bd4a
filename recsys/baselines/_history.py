"""History rows as sparse user x item matrices, shared by the baselines that score from history.

Scoring reads each user's known interactions from a ``UserSequences``. Models that weight
recent items more use a positional half-life: the last item has weight 1, the item ``h``
positions earlier has weight 0.5. A repeated item keeps the weight of its latest occurrence,
so a history row never counts one item twice.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.data.interactions import UserSequences


def check_users(users: np.ndarray, history: UserSequences, n_items: int, model: str) -> np.ndarray:
    """Users as int64 indices, validated against the history and the fitted item count."""
    users = np.asarray(users, dtype=np.int64).ravel()
    if history.n_items != n_items:
        raise ValueError(
            f"{model}: history has {history.n_items} item columns but the model was fitted on "
            f"{n_items}"
        )
    bad = (users < 0) | (users >= history.n_users)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{model}: users[{first}] = {users[first]} is outside the history's "
            f"{history.n_users} users"
        )
    return users


def positional_weights(from_end: np.ndarray, half_life: float | None) -> np.ndarray:
    """Weight 0.5 ** (steps before the last item / half_life); all ones without a half-life."""
    if half_life is None:
        return np.ones(len(from_end), dtype=np.float32)
    if half_life <= 0:
        raise ValueError(f"recency half-life must be positive, got {half_life}")
    return np.exp2(-from_end / half_life).astype(np.float32)


def history_matrix(
    history: UserSequences,
    users: np.ndarray,
    *,
    half_life: float | None = None,
) -> sp.csr_matrix:
    """(len(users), n_items) CSR of the users' history, binary or recency-weighted."""
    starts = history.indptr[users]
    lengths = history.indptr[users + 1] - starts
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    nnz = int(indptr[-1])
    offsets = np.arange(nnz, dtype=np.int64)
    gather = np.repeat(starts - indptr[:-1], lengths) + offsets
    rows = np.repeat(np.arange(len(users), dtype=np.int64), lengths)
    from_end = np.repeat(indptr[1:], lengths) - 1 - offsets
    weights = positional_weights(from_end, half_life)
    return _dedupe_keep_max(rows, history.items[gather], weights, (len(users), history.n_items))


def _dedupe_keep_max(
    rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """CSR with one entry per (row, col), the largest weight winning."""
    order = np.lexsort((weights, cols, rows))
    rows, cols, weights = rows[order], cols[order], weights[order]
    last = np.ones(len(rows), dtype=bool)
    last[:-1] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    matrix = sp.csr_matrix((weights[last], (rows[last], cols[last])), shape=shape)
    matrix.sort_indices()
    return matrix


def item_counts(train: UserSequences) -> np.ndarray:
    """(n_items,) float64 number of training interactions per item."""
    return np.bincount(train.items, minlength=train.n_items).astype(np.float64)


def training_matrix(train: UserSequences) -> sp.csr_matrix:
    """Binary (n_users, n_items) float32 CSR of the training interactions."""
    matrix = train.to_csr(binary=True).astype(np.float32)
    matrix.sort_indices()
    return matrix
