"""Exact id -> position look-ups for many ids at once, cheap enough for one request's hundreds.

``IdPositions(ids).of(queries)`` answers, for every query id, its position in ``ids`` (-1 when
absent), as ``pd.Index(ids).get_indexer(queries)`` does, without building an index object per
call (which costs more than the look-up itself at a request's size). Ids that are small
non-negative integers (entity ids numbered from 0, as catalogues number them) are answered
from a dense table, one array read per query; any other ids (e.g. 63-bit pseudonyms) by a
binary search over the sorted ids, the queries searched in sorted order and each distinct one
once (a request's queries repeat: one viewer, a few hundred rooms).
"""

from __future__ import annotations

import numpy as np

# A dense table may hold this many entries per id (and at least this many in all): the
# catalogue's ids are dense enough, pseudonymised user ids never are.
DENSE_SLACK = 4
DENSE_MIN = 1 << 16


class IdPositions:
    """Position of each id of ``ids`` (unique int64); -1 for any other value."""

    __slots__ = ("_table", "_sorted", "_order")

    def __init__(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        self._table = None
        if len(ids) and ids.min() >= 0 and ids.max() < max(DENSE_SLACK * len(ids), DENSE_MIN):
            self._table = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
            self._table[ids] = np.arange(len(ids))
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]

    @property
    def dense(self) -> bool:
        """Whether look-ups read a dense table (one array read per query)."""
        return self._table is not None

    def of(self, queries: np.ndarray) -> np.ndarray:
        """(n,) int64 position of each query id, -1 where it is not an id."""
        q = np.asarray(queries, dtype=np.int64)
        if self._table is not None:
            inside = (q >= 0) & (q < len(self._table))
            return np.where(inside, self._table[np.where(inside, q, 0)], -1)
        if len(self._sorted) == 0:
            return np.full(q.shape, -1, dtype=np.int64)
        if q.size == 1:  # one viewer
            at = min(int(np.searchsorted(self._sorted, q.flat[0])), len(self._sorted) - 1)
            hit = self._sorted[at] == q.flat[0]
            return np.full(q.shape, self._order[at] if hit else -1, dtype=np.int64)
        distinct, inverse = np.unique(q, return_inverse=True)
        pos = np.minimum(np.searchsorted(self._sorted, distinct), len(self._sorted) - 1)
        found = np.where(self._sorted[pos] == distinct, self._order[pos], -1)
        return found[inverse].reshape(q.shape)
