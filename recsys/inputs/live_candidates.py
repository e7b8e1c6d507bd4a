"""What was live when each training target happened, for availability-aware training.

Evaluation ranks a live-commerce target only among the rooms (or shelved products) on air at its
time. Training the same way, with a softmax over what was live at each target's time, spends the
model's capacity on telling apart things a viewer could actually choose between. The sets come
from the availability intervals (``recsys.data.live.availability_intervals``) via
``recsys.data.availability.live_segments``: queries that fall in the same elementary time segment
share one set, so the memory is per segment, not per target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys.data.availability import live_segments


@dataclass(frozen=True)
class LiveCandidates:
    """Per training slot, the row of its target's live set; the sets as CSR over rows."""

    row: np.ndarray  # (U, L) int64 set row of each slot's target time, -1 where no target
    indptr: np.ndarray  # (n_sets + 1,) int64
    items: np.ndarray  # (nnz,) int64
    n_items: int

    @classmethod
    def build(
        cls,
        intervals: tuple[np.ndarray, np.ndarray, np.ndarray],
        times: np.ndarray,
        has_target: np.ndarray,
        n_items: int,
    ) -> LiveCandidates:
        """``intervals`` = (item, start, end); ``times`` (U, L) of the targets where flagged."""
        row = np.full(times.shape, -1, dtype=np.int64)
        rows, indptr, items = live_segments(*intervals, times[has_target])
        row[has_target] = rows
        return cls(row, indptr, items, n_items)

    def mask(self, rows: np.ndarray, targets: np.ndarray) -> torch.Tensor:
        """(N, n_items) bool: the items live for each of N set rows; each row's target too."""
        starts, lengths = self.indptr[rows], self.indptr[rows + 1] - self.indptr[rows]
        owner = np.repeat(np.arange(len(rows)), lengths)
        offset = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        items = self.items[offset + np.arange(lengths.sum())]
        out = np.zeros((len(rows), self.n_items), dtype=bool)
        out[owner, items] = True
        out[np.arange(len(rows)), targets] = True  # never mask a target (should it be off air)
        return torch.from_numpy(out)
