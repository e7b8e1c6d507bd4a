"""``EventBatch``: events as plain numpy columns, checked once, ready for the trigger engine.

The engine reads the project's event schema (``recsys.data.schema.EVENTS``: the events
``POST /events`` ingests and the market logs). Nullable id columns become ``int64`` with -1 for
missing, the event type a small code, so replay costs no pandas work per batch. What cannot be
used is counted by reason (``BatchFaults``) and left out, never raised: an unknown event type, a
missing field the type requires (a cart without a product), a reference to a streamer or product
the catalogue does not hold.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

# The event types the engine reads; others are counted as ``ignored`` (not faults).
TYPES = ("enter", "cart", "purchase", "coupon_claim", "follow")
CODE = {name: i for i, name in enumerate(TYPES)}
OTHER = -1
EVENT_TYPES = ("enter", "leave", "comment", "like", "click", "cart", "purchase", "refund",
               "coupon_claim", "follow", "share")  # fmt: skip
NEEDS = {"enter": ("session_id", "streamer_id"), "cart": ("product_id",),
         "purchase": ("product_id",), "coupon_claim": (), "follow": ("streamer_id",)}  # fmt: skip
INT_COLUMNS = ("event_id", "ts", "user_id", "session_id", "streamer_id", "product_id")


@dataclass(frozen=True)
class EventBatch:
    """Events in stream order: ids and times ``int64``, references ``int64`` (-1: none), the
    type as an index into ``TYPES`` (-1: a type the engine does not read)."""

    event_id: np.ndarray
    ts: np.ndarray
    user_id: np.ndarray
    kind: np.ndarray  # int8
    session_id: np.ndarray
    streamer_id: np.ndarray
    product_id: np.ndarray
    coupon_value: np.ndarray  # float64, 0 where none

    def __len__(self) -> int:
        return len(self.event_id)

    def take(self, rows: np.ndarray | slice) -> EventBatch:
        return EventBatch(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))

    @classmethod
    def from_frame(cls, events: pd.DataFrame, faults: Counter | None = None) -> EventBatch:
        """The usable rows of ``events``; each unusable row counted in ``faults`` by reason."""
        faults = faults if faults is not None else Counter()
        missing = [c for c in ("event_id", "ts", "user_id", "event_type") if c not in events]
        if missing:
            raise ValueError(f"events: required columns {missing} are absent")
        cols = {c: _ints(events, c) for c in INT_COLUMNS}
        name = events["event_type"].astype(str).to_numpy()
        known = np.isin(name, EVENT_TYPES)
        kind = np.full(len(events), OTHER, dtype=np.int8)
        keep = known.copy()
        for t, code in CODE.items():
            rows = name == t
            kind[rows] = code
            for field in NEEDS[t]:
                bad = rows & (cols[field] < 0)
                faults[f"{t} without {field}"] += int(bad.sum())
                keep &= ~bad
        faults["unknown event type"] += int((~known).sum())
        bad_id = (cols["event_id"] < 0) | (cols["ts"] < 0) | (cols["user_id"] < 0)
        faults["missing event_id, ts or user_id"] += int((bad_id & known).sum())
        keep &= ~bad_id
        value = _floats(events, "coupon_value")
        return cls(*(cols[c][keep] for c in INT_COLUMNS[:3]), kind[keep],
                   *(cols[c][keep] for c in INT_COLUMNS[3:]), value[keep])  # fmt: skip


def _ints(events: pd.DataFrame, column: str) -> np.ndarray:
    if column not in events:
        return np.full(len(events), -1, dtype=np.int64)
    values = events[column]
    if not pd.api.types.is_integer_dtype(values):
        values = pd.to_numeric(values, errors="coerce")
        values = values.where(values == values.round())  # a fractional id is no id
    return values.astype("Int64").fillna(-1).to_numpy(np.int64)


def _floats(events: pd.DataFrame, column: str) -> np.ndarray:
    if column not in events:
        return np.zeros(len(events))
    return pd.to_numeric(events[column], errors="coerce").fillna(0.0).to_numpy(np.float64)
