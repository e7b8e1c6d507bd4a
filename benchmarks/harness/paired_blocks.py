"""Two configurations measured in alternating blocks, compared by a block bootstrap.

On a shared machine the background load drifts over minutes. Running configuration A for a
while and then B would charge B with whatever the drift did meanwhile; alternating short blocks
in pairs (A B, then B A, ...) puts both under the same drift, and the pair is the unit of
resampling: the bootstrap draws whole pairs with replacement and recomputes each side's pooled
percentile, so the interval carries the block-to-block variation the load causes, not only the
sampling noise of the requests inside a block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def block_order(pairs: int) -> list[tuple[int, str]]:
    """(pair, config) in run order: A B, B A, A B, ... (linear drift cancels over two pairs)."""
    if pairs < 1:
        raise ValueError(f"block_order: at least one pair, got {pairs}")
    order = []
    for p in range(pairs):
        order += [(p, c) for c in (("A", "B") if p % 2 == 0 else ("B", "A"))]
    return order


def pooled_percentile(blocks: Sequence[np.ndarray], q: float) -> float | None:
    values = np.concatenate([np.asarray(b, float) for b in blocks]) if len(blocks) else []
    return float(np.percentile(values, q)) if len(values) else None


@dataclass(frozen=True)
class PairedDifference:
    """B's pooled percentile minus A's, with a pair-bootstrap interval and per-pair spread."""

    q: float
    a: float
    b: float
    diff: float
    low: float  # the bootstrap interval's bounds (``level``, percentile method)
    high: float
    level: float
    per_pair: list[float]  # B - A within each pair

    def as_dict(self) -> dict:
        per = np.asarray(self.per_pair)
        return {
            "q": self.q,
            "a_ms": round(self.a, 3),
            "b_ms": round(self.b, 3),
            "diff_ms": round(self.diff, 3),
            "interval_ms": [round(self.low, 3), round(self.high, 3)],
            "level": self.level,
            "per_pair_diff_ms": [round(x, 3) for x in self.per_pair],
            "per_pair_median_ms": round(float(np.median(per)), 3),
            "pairs_b_higher": int((per > 0).sum()),
        }


def paired_difference(
    a: Sequence[np.ndarray],
    b: Sequence[np.ndarray],
    *,
    q: float = 99.0,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """``a[p]``, ``b[p]``: the latencies of pair ``p``'s A and B blocks."""
    if len(a) != len(b) or not len(a):
        raise ValueError(f"paired_difference: as many A as B blocks, >= 1; got {len(a)}, {len(b)}")
    if any(not len(x) for x in (*a, *b)):
        raise ValueError("paired_difference: a block without latencies (every request failed?)")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(a), (n_boot, len(a)))
    diffs = np.array(
        [
            pooled_percentile([b[i] for i in d], q) - pooled_percentile([a[i] for i in d], q)
            for d in draws
        ]
    )
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    pa, pb = pooled_percentile(a, q), pooled_percentile(b, q)
    per_pair = [float(np.percentile(y, q) - np.percentile(x, q)) for x, y in zip(a, b, strict=True)]
    return PairedDifference(q, pa, pb, pb - pa, float(low), float(high), level, per_pair)
