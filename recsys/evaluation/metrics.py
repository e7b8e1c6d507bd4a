"""Top-k ranking metrics, computed per row so that two models can be compared pairwise.

Conventions shared by every function here:

* ``topk`` is a (B, K) array of item indices, best first; ``-1`` marks an empty slot (fewer
  than K items could be ranked, e.g. few live candidates). Torch tensors are accepted.
* Ranks are 0-based: the best item has rank 0. A target outside the list has rank ``-1``.
* Single-target metrics (leave-one-out) take ``target`` (B,); multi-target metrics take
  ``relevant`` as a CSR matrix (B, n_items) or a padded (B, T) array with ``-1`` padding.
  Duplicated relevant items count once.
* Every metric returns one float64 value per row; take ``.mean()`` for the usual number.
  Only ``coverage`` is a property of the whole set of lists and returns one float.

Definitions (rank r of the target, 0-based):

* ``hit_rate@k`` = 1 if r < k.
* ``ndcg@k`` = 1 / log2(r + 2) if r < k (the ideal DCG of a single target is 1).
* ``mrr@k`` = 1 / (r + 1) if r < k, else 0; ``reciprocal_rank`` gives the untruncated
  value from a full rank (what evaluation protocols report as ``mrr``).
* ``recall@k`` = |relevant in top k| / |relevant|.
* ``ndcg_multi@k`` = DCG over relevant items in the top k / DCG of min(|relevant|, k)
  relevant items placed first.
* ``coverage@k`` = distinct items over all top-k lists / ``n_items``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


def as_numpy(x, *, dtype=None) -> np.ndarray:
    """A numpy view of an array-like or a torch tensor (moved to the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _topk(topk, k: int | None) -> np.ndarray:
    arr = as_numpy(topk, dtype=np.int64)
    if arr.ndim != 2:
        raise ValueError(f"topk must be 2-D (B, K), got shape {arr.shape}")
    if k is None:
        return arr
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return arr[:, :k]


def _target(target, n_rows: int) -> np.ndarray:
    arr = as_numpy(target, dtype=np.int64).reshape(-1)
    if len(arr) != n_rows:
        raise ValueError(f"target has {len(arr)} rows but topk has {n_rows}")
    return arr


def _discounts(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(n, dtype=np.float64) + 2.0)


def target_rank(topk, target, k: int | None = None) -> np.ndarray:
    """(B,) int64 position of each row's target within its first k items, -1 when absent."""
    lists = _topk(topk, k)
    tgt = _target(target, len(lists))
    hits = lists == tgt[:, None]  # (B, k)
    return np.where(hits.any(axis=1), hits.argmax(axis=1), -1).astype(np.int64)


def hit_rate(topk, target, k: int) -> np.ndarray:
    """(B,) 1.0 where the target is among the first k items."""
    return (target_rank(topk, target, k) >= 0).astype(np.float64)


def ndcg(topk, target, k: int) -> np.ndarray:
    """(B,) single-target NDCG@k: 1/log2(rank + 2), 0 beyond k."""
    return _ndcg_from_rank(target_rank(topk, target, k), k)


def mrr(topk, target, k: int | None = None) -> np.ndarray:
    """(B,) reciprocal rank within the first k items (the whole list when k is None), else 0."""
    return reciprocal_rank(target_rank(topk, target, k))


def reciprocal_rank(rank) -> np.ndarray:
    """(B,) 1/(rank + 1) from 0-based ranks; negative ranks (not ranked) give 0."""
    r = as_numpy(rank, dtype=np.int64)
    return np.where(r >= 0, 1.0 / (np.maximum(r, 0) + 1.0), 0.0)


def _ndcg_from_rank(rank: np.ndarray, k: int) -> np.ndarray:
    inside = (rank >= 0) & (rank < k)
    return np.where(inside, 1.0 / np.log2(np.maximum(rank, 0) + 2.0), 0.0)


def metrics_from_rank(rank, ks: Sequence[int], *, prefix: str = "") -> dict[str, np.ndarray]:
    """Per-row ``hr@k``, ``ndcg@k`` for each k and the untruncated ``mrr`` from full 0-based ranks.

    ``rank`` is the target's position among all ranked items (-1 when it was not ranked), so
    the values equal those from a top-k list for every k the list covers.
    """
    r = as_numpy(rank, dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"{prefix}hr@{k}"] = ((r >= 0) & (r < k)).astype(np.float64)
        out[f"{prefix}ndcg@{k}"] = _ndcg_from_rank(r, k)
    out[f"{prefix}mrr"] = reciprocal_rank(r)
    return out


def per_user_metrics(topk, target, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-row ``hr@k``, ``ndcg@k`` and ``mrr@k`` for each k, from single-target top-k lists."""
    lists = _topk(topk, None)
    if max(ks) > lists.shape[1]:
        raise ValueError(f"ks {tuple(ks)} exceed the list length {lists.shape[1]}")
    rank = target_rank(lists, target)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        inside = np.where(rank < k, rank, -1)
        out[f"hr@{k}"] = (inside >= 0).astype(np.float64)
        out[f"ndcg@{k}"] = _ndcg_from_rank(inside, k)
        out[f"mrr@{k}"] = reciprocal_rank(inside)
    return out


def relevant_csr(relevant, n_rows: int) -> sp.csr_matrix:
    """Binary CSR (B, n_cols) of relevant items from a sparse matrix or a -1 padded (B, T) array."""
    if sp.issparse(relevant):
        csr = sp.csr_matrix(relevant, dtype=np.float64, copy=True)
    else:
        padded = as_numpy(relevant, dtype=np.int64)
        if padded.ndim != 2:
            raise ValueError(f"padded relevant items must be 2-D (B, T), got {padded.shape}")
        keep = padded >= 0
        rows = np.broadcast_to(np.arange(len(padded))[:, None], padded.shape)[keep]
        n_cols = int(padded.max(initial=-1)) + 1
        data = np.ones(len(rows), dtype=np.float64)
        csr = sp.csr_matrix((data, (rows, padded[keep])), shape=(len(padded), n_cols))
    if csr.shape[0] != n_rows:
        raise ValueError(f"relevant has {csr.shape[0]} rows but topk has {n_rows}")
    csr.sum_duplicates()
    csr.eliminate_zeros()
    csr.data[:] = 1.0
    return csr


def _relevance(topk, relevant, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, k) bool hit mask and (B,) number of distinct relevant items per row."""
    lists = _topk(topk, k)
    csr = relevant_csr(relevant, len(lists))
    n_rel = np.diff(csr.indptr)
    if (n_rel == 0).any():
        row = int(np.flatnonzero(n_rel == 0)[0])
        raise ValueError(f"relevant items: row {row} has none; recall/NDCG are undefined there")
    valid = (lists >= 0) & (lists < csr.shape[1])
    rows = np.broadcast_to(np.arange(len(lists))[:, None], lists.shape)
    hits = np.zeros(lists.shape, dtype=bool)
    hits[valid] = np.asarray(csr[rows[valid], lists[valid]]).ravel() > 0
    return hits, n_rel


def recall(topk, relevant, k: int) -> np.ndarray:
    """(B,) share of each row's relevant items found in its first k items."""
    hits, n_rel = _relevance(topk, relevant, k)
    return hits.sum(axis=1) / n_rel


def ndcg_multi(topk, relevant, k: int) -> np.ndarray:
    """(B,) binary-relevance NDCG@k with several relevant items per row."""
    hits, n_rel = _relevance(topk, relevant, k)
    disc = _discounts(hits.shape[1])
    dcg = hits @ disc
    ideal = np.concatenate([[0.0], np.cumsum(_discounts(k))])[np.minimum(n_rel, k)]
    return dcg / ideal


def coverage(topk, n_items: int, k: int) -> float:
    """Distinct items over all rows' first k items, divided by the catalogue size ``n_items``."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    lists = _topk(topk, k)
    return len(np.unique(lists[lists >= 0])) / n_items
