"""Recent popularity of rooms and products: decayed counts, built in bulk, updated per event.

A room's popularity is the decayed number of room entries (``enter``) it got; a product's the
decayed weight of its clicks (1), carts (2) and purchases (3). Counts are ``[value, ts]``
entries exactly as in ``recsys.ranking.session``, so a bulk build from logged events and
event-by-event updates give the same numbers (to rounding).
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd

from recsys.ranking.events import NO_ID, SessionEvent, id_column
from recsys.ranking.session import bump, decay

ROOM_WEIGHT = {"enter": 1.0}
PRODUCT_WEIGHT = {"click": 1.0, "cart": 2.0, "purchase": 3.0}


def _bulk(ids: np.ndarray, ts: np.ndarray, weight: np.ndarray, half_life: float) -> dict:
    """id -> [decayed sum as of the latest event time, that time]."""
    if len(ids) == 0:
        return {}
    ref = int(ts.max())
    contribution = weight * np.exp2(-(ref - ts) / half_life)
    sums = pd.Series(contribution).groupby(ids).sum()
    return {int(i): [float(v), ref] for i, v in sums.items()}


class DecayedPopularity:
    """Thread-safe decayed popularity per room (streamer id) and per product id."""

    def __init__(self, *, half_life_s: float = 6 * 3600.0) -> None:
        if not half_life_s > 0:
            raise ValueError(f"DecayedPopularity: half_life_s must be > 0, got {half_life_s}")
        self.half_life_s = float(half_life_s)
        self._tables: dict[str, dict[int, list]] = {"room": {}, "product": {}}
        self._lock = threading.Lock()

    @classmethod
    def from_events(cls, events: pd.DataFrame, *, half_life_s: float = 6 * 3600.0):
        """Popularity after every event of a logged table (vectorised)."""
        pop = cls(half_life_s=half_life_s)
        kind = events["event_type"].to_numpy(dtype=object)
        ts = events["ts"].to_numpy(np.int64)
        for name, weights, field in (
            ("room", ROOM_WEIGHT, "streamer_id"),
            ("product", PRODUCT_WEIGHT, "product_id"),
        ):
            weight = pd.Series(kind).map(weights).fillna(0.0).to_numpy(np.float64)
            ids = id_column(events, field)
            rows = (weight > 0) & (ids != NO_ID)
            pop._tables[name] = _bulk(ids[rows], ts[rows], weight[rows], pop.half_life_s)
        return pop

    def add(self, event: SessionEvent) -> None:
        for name, weights, key in (
            ("room", ROOM_WEIGHT, event.streamer),
            ("product", PRODUCT_WEIGHT, event.product),
        ):
            weight = weights.get(event.event_type, 0.0)
            if weight and key != NO_ID:
                with self._lock:
                    entry = self._tables[name].setdefault(key, [0.0, event.ts])
                    bump(entry, weight, event.ts, self.half_life_s)

    def values(self, kind: str, ids: np.ndarray, now: int) -> np.ndarray:
        """(n,) decayed popularity at ``now`` of each id of ``kind`` ('room' | 'product')."""
        with self._lock:
            table = self._tables[kind]
            entries = [table.get(i) for i in np.asarray(ids).tolist()]
        return np.array(
            [0.0 if e is None else e[0] * decay(now - e[1], self.half_life_s) for e in entries]
        )

    def __len__(self) -> int:
        return sum(len(t) for t in self._tables.values())
