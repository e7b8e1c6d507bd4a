"""Deterministic top-k and target ranks over batches of dense scores.

Scores are turned into unique unsigned 64-bit sort keys: the high 32 bits order the float32
score, the low 32 bits break ties in favour of the smaller item index. Every item of a row
therefore has a distinct key, so ``argpartition`` is exact and deterministic, the rank of a
target is simply the number of larger keys, and the top-k list and the rank always agree.
Items that must not be ranked (padding, unknown, seen, unavailable) get key 0, below every
real key, and show as -1 in a top-k list that runs past the rankable items.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.data.vocab import N_RESERVED
from recsys.evaluation.metrics import as_numpy

MASKED = np.uint64(0)
_LOW = np.uint64(0xFFFFFFFF)
_SIGN = np.uint32(0x80000000)


def _ordered_bits(s: np.ndarray) -> np.ndarray:
    """uint32 codes whose unsigned order is the float32 order (IEEE bits, negatives reflected)."""
    bits = (s + np.float32(0.0)).view(np.int32)  # adding +0 turns -0.0 into +0.0
    flip = bits >> 31  # all ones for negative floats, else zero
    flip &= np.int32(0x7FFFFFFF)
    bits ^= flip  # negatives: larger magnitude -> smaller signed value
    codes = bits.view(np.uint32)
    codes ^= _SIGN  # signed order -> unsigned order
    return codes


def score_keys(scores, items: np.ndarray | None = None) -> np.ndarray:
    """(B, N) uint64 keys: higher score first, then lower item index.

    Column j holds item j unless ``items`` (B, N) names the item each score belongs to (scores
    gathered for a candidate list). Padding and unknown items get key 0.
    """
    s = as_numpy(scores, dtype=np.float32)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D (B, N), got shape {s.shape}")
    nan_rows = np.isnan(s).any(axis=1)
    if nan_rows.any():
        row = int(np.flatnonzero(nan_rows)[0])
        raise ValueError(f"scores: row {row} contains NaN; a model must score every item")
    keys = _ordered_bits(s).astype(np.uint64)
    keys <<= np.uint64(32)
    if items is None:
        keys |= _LOW - np.arange(s.shape[1], dtype=np.uint64)
        keys[:, :N_RESERVED] = MASKED
    else:
        keys |= _LOW - items.astype(np.uint64)
        keys[items < N_RESERVED] = MASKED
    return keys


def mask_entries(keys: np.ndarray, rows: np.ndarray, items: np.ndarray) -> None:
    """Remove (row, item) pairs from ranking in place."""
    keys[rows, items] = MASKED


def topk_from_keys(keys: np.ndarray, k: int) -> np.ndarray:
    """(B, k) int64 item indices, best first; -1 where fewer than k items are rankable."""
    n_rows, n_items = keys.shape
    kk = min(k, n_items)
    if kk < n_items:
        part = np.argpartition(keys, n_items - kk, axis=1)[:, n_items - kk :]
    else:
        part = np.broadcast_to(np.arange(n_items), keys.shape)
    part_keys = np.take_along_axis(keys, part, axis=1)
    order = np.argsort(part_keys, axis=1)[:, ::-1]  # keys are unique: no ties to break
    top = np.take_along_axis(part, order, axis=1).astype(np.int64)
    top[np.take_along_axis(part_keys, order, axis=1) == MASKED] = -1
    if kk < k:
        top = np.pad(top, ((0, 0), (0, k - kk)), constant_values=-1)
    return top


def target_ranks(keys: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(B,) 0-based rank of each row's target among its rankable items; -1 if it was masked."""
    target_key = keys[np.arange(len(keys)), target]
    rank = (keys > target_key[:, None]).sum(axis=1)
    return np.where(target_key == MASKED, -1, rank).astype(np.int64)


def n_rankable(keys: np.ndarray) -> np.ndarray:
    """(B,) number of items each row ranks."""
    return (keys != MASKED).sum(axis=1)


def csr_rows(indptr: np.ndarray, items: np.ndarray, rows: np.ndarray):
    """(row position, item) pairs for the given CSR rows, e.g. a batch of users' histories."""
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    gather = offsets + np.arange(lengths.sum())
    return np.repeat(np.arange(len(rows)), lengths), items[gather]


def ragged_ranks(rows, items, keys, target, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Target rank and rankable count per row of lists given as (row, item, key) triples.

    For short per-row candidate lists (e.g. live rooms) this avoids a dense (B, n_items) pass.
    A row must not list an item twice. Returns ((n_rows,) rank, -1 if masked, (n_rows,) count).
    """
    target_key = np.zeros(n_rows, dtype=np.uint64)
    hit = items == target[rows]
    target_key[rows[hit]] = keys[hit]
    rank = np.bincount(rows, weights=keys > target_key[rows], minlength=n_rows).astype(np.int64)
    count = np.bincount(rows, weights=keys != MASKED, minlength=n_rows).astype(np.int64)
    return np.where(target_key == MASKED, -1, rank), count


def ragged_topk(rows, items, keys, n_rows: int, k: int) -> np.ndarray:
    """(n_rows, k) best items of lists given as (row, item, key) triples; -1 padded."""
    order = np.lexsort((~keys, rows))  # by row, then best (largest) key first; masked last
    rows_o, items_o, keys_o = rows[order], items[order], keys[order]
    slot = np.arange(len(rows_o)) - np.searchsorted(rows_o, rows_o)
    keep = (slot < k) & (keys_o != MASKED)
    top = np.full((n_rows, k), -1, dtype=np.int64)
    top[rows_o[keep], slot[keep]] = items_o[keep]
    return top


def rank_topk(scores, k: int, exclude_csr_rows=None) -> np.ndarray:
    """(B, k) deterministic top-k item indices of dense ``scores``, -1 padded.

    Columns 0 and 1 (padding, unknown) are never returned. ``exclude_csr_rows`` is an optional
    sparse matrix (B, n_items), aligned with the score rows, whose stored entries are excluded
    (typically the users' seen items). Equal scores rank the smaller item index first.
    """
    keys = score_keys(scores)
    if exclude_csr_rows is not None:
        excl = sp.csr_matrix(exclude_csr_rows)
        if excl.shape[0] != keys.shape[0] or excl.shape[1] > keys.shape[1]:
            raise ValueError(
                f"exclude_csr_rows shape {excl.shape} does not fit scores {keys.shape}"
            )
        rows = np.repeat(np.arange(excl.shape[0]), np.diff(excl.indptr))
        mask_entries(keys, rows, excl.indices)
    return topk_from_keys(keys, k)
