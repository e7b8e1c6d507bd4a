"""``SeenIds``: which event ids were already applied, so at-least-once input is applied once.

A delivery pipeline that retries sends some events twice; the trigger engine must not count a
cart twice or fire a trigger again. Ids are kept as a few sorted ``int64`` runs (a small
log-structured merge): a batch is looked up with one binary search per run, and runs of similar
size are merged, so a replay of ``n`` events costs ``O(n log n)`` in numpy and no Python loop
per event.
"""

from __future__ import annotations

import numpy as np


class SeenIds:
    """The set of ids applied so far."""

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(r) for r in self._runs)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """A bool per id: already applied."""
        ids = np.asarray(ids, dtype=np.int64)
        hit = np.zeros(len(ids), dtype=bool)
        for run in self._runs:
            pos = np.searchsorted(run, ids)
            pos[pos == len(run)] = len(run) - 1
            hit |= run[pos] == ids
        return hit

    def first_time(self, ids: np.ndarray) -> np.ndarray:
        """A bool per id: new (not applied before and its first copy in this batch); the new
        ids are recorded as applied."""
        ids = np.asarray(ids, dtype=np.int64)
        fresh = np.zeros(len(ids), dtype=bool)
        if len(ids) == 0:
            return fresh
        _, first = np.unique(ids, return_index=True)
        fresh[first] = True
        fresh &= ~self.contains(ids)
        self._add(np.sort(ids[fresh]))
        return fresh

    def _add(self, run: np.ndarray) -> None:
        if len(run) == 0:
            return
        self._runs.append(run)
        # Merge while the newest run is at least half the size of the one before: at most
        # log2(n) runs, each id merged O(log n) times.
        while len(self._runs) > 1 and 2 * len(self._runs[-1]) >= len(self._runs[-2]):
            top = self._runs.pop()  # disjoint from every run: concatenation keeps ids unique
            self._runs[-1] = np.sort(np.concatenate([self._runs[-1], top]), kind="stable")
