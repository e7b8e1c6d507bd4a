"""What the counters count, and ``RoomState``: one room's view of the shared ``RoomTable``.

Minute ``m`` covers event times ``[60 m, 60 m + 60)``; each room holds a ring of ``slots``
minutes (``table.py``). Online viewers at a minute's end are the room's ``online_base`` (enters
minus leaves of minutes that left the ring) plus enters minus leaves of the ring's minutes up
to it.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

import numpy as np

from recsys.liveroom.events import KIND_CODE

if TYPE_CHECKING:  # the table holds the views; the views only read it
    from recsys.liveroom.table import RoomTable

METRICS: tuple[str, ...] = (
    "enters",
    "leaves",
    "dwell_s",
    "comments",
    "likes",
    "shares",
    "follows",
    "clicks",
    "carts",
    "coupon_claims",
    "orders",
    "gmv",
)
M = {name: i for i, name in enumerate(METRICS)}
# Kind code -> the metric it counts (-1: none; "present" changes the product on show).
KIND_METRIC = np.full(len(KIND_CODE), -1, dtype=np.int64)
for _kind, _metric in (
    ("enter", "enters"),
    ("leave", "leaves"),
    ("comment", "comments"),
    ("like", "likes"),
    ("share", "shares"),
    ("follow", "follows"),
    ("click", "clicks"),
    ("cart", "carts"),
    ("coupon_claim", "coupon_claims"),
    ("purchase", "orders"),
):
    KIND_METRIC[KIND_CODE[_kind]] = M[_metric]
CLICK, CART, PRESENT = KIND_CODE["click"], KIND_CODE["cart"], KIND_CODE["present"]
PURCHASE, LEAVE, ENTER = KIND_CODE["purchase"], KIND_CODE["leave"], KIND_CODE["enter"]


class RoomState:
    """Read access to one room's row of a ``RoomTable``."""

    def __init__(self, table: RoomTable, room: int, row: int) -> None:
        self.table, self.room, self.row = table, room, row
        self.slots = table.slots

    @property
    def watermark(self) -> int:
        return int(self.table.watermark[self.row])

    @property
    def first_ts(self) -> int:
        return int(self.table.first_ts[self.row])

    @property
    def products(self) -> dict[int, dict[int, list[float]]]:
        """minute -> product -> [clicks, carts]"""
        return self.table.products[self.row]

    @property
    def shows(self) -> list[tuple[int, int, int]]:
        """(ts, event id, product) of each product put on show, sorted"""
        return self.table.shows[self.row]

    def on_show(self, minute: int) -> int:
        """The product on show at the end of ``minute`` (-1 if none yet)."""
        shows = self.shows
        i = bisect.bisect_left(shows, ((minute + 1) * 60, -1, -1))
        return shows[i - 1][2] if i else -1

    def minute_counts(self, minute: int) -> np.ndarray | None:
        s = minute % self.slots
        held = self.table.minute_of[self.row, s] == minute
        return self.table.counts[self.row, s] if held else None

    def span(self, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
        """(counts (k, metrics), online viewers (k,)) of minutes first..last, vectorised."""
        held_of, counts_of = self.table.minute_of[self.row], self.table.counts[self.row]
        minutes = np.arange(first, last + 1)
        slot = minutes % self.slots
        held = held_of[slot] == minutes
        counts = np.where(held[:, None], counts_of[slot], 0.0)
        ring = np.flatnonzero(held_of >= 0)
        order = ring[np.argsort(held_of[ring])]
        net = np.cumsum(counts_of[order, M["enters"]] - counts_of[order, M["leaves"]])
        upto = np.searchsorted(held_of[order], minutes, side="right")
        base = self.table.online_base[self.row]
        online = base + np.where(upto > 0, net[np.maximum(upto - 1, 0)], 0.0)
        return counts, online

    def online_at(self, minute: int) -> float:
        """Enters minus leaves of every accepted event up to the end of ``minute``."""
        return float(self.span(minute, minute)[1][0])
