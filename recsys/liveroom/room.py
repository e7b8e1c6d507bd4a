"""One live room's counters: a ring of per-minute buckets, products on show, seen event ids.

Minute ``m`` covers event times ``[60 m, 60 m + 60)``. The ring holds ``slots`` minutes; a
minute leaving the ring adds its enters minus leaves to ``online_base`` so online viewers stay
exact (enters minus leaves of every accepted event up to a minute's end). Event ids are kept
per minute and forgotten with it: by then any copy of the event is too late anyway, because
the ring spans more than the allowed lateness. Memory per room is bounded by the ring, the
products clicked within it and the ids of its events.
"""

from __future__ import annotations

import bisect

import numpy as np

from recsys.liveroom.events import KIND_CODE, Columns

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
_KIND_METRIC = np.full(len(KIND_CODE), -1, dtype=np.int64)
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
    _KIND_METRIC[KIND_CODE[_kind]] = M[_metric]
CLICK, CART, PRESENT = KIND_CODE["click"], KIND_CODE["cart"], KIND_CODE["present"]
PURCHASE, LEAVE, ENTER = KIND_CODE["purchase"], KIND_CODE["leave"], KIND_CODE["enter"]


class RoomState:
    """Counters of one room; ``add`` takes events already deduplicated and on time."""

    def __init__(self, room: int, *, slots: int) -> None:
        self.room = room
        self.slots = slots
        self.counts = np.zeros((slots, len(METRICS)))
        self.minute_of = np.full(slots, -1, dtype=np.int64)  # which minute each slot holds
        self.online_base = 0.0
        self.watermark = -1  # largest accepted event time
        self.first_ts = -1
        self.products: dict[
            int, dict[int, list[float]]
        ] = {}  # minute -> product -> [clicks, carts]
        self.shows: list[tuple[int, int, int]] = []  # (ts, event_id, product) sorted
        self.ids: dict[int, list[int]] = {}  # minute -> event ids seen in it
        self.known: set[int] = set()  # the union of ``ids``

    def seen(self, ids: np.ndarray) -> np.ndarray:
        known = self.known
        return np.fromiter((i in known for i in ids.tolist()), dtype=bool, count=len(ids))

    def add(self, ev: Columns) -> None:
        if not len(ev):
            return
        if self.first_ts < 0:
            self.first_ts = int(ev.ts.min())
        minute = ev.ts // 60
        self._advance(int(minute.max()))
        ev, minute = self._outside_ring(ev, minute)
        slot = minute % self.slots
        metric = _KIND_METRIC[ev.kind]
        counted = metric >= 0
        flat = slot[counted] * len(METRICS) + metric[counted]
        size = self.slots * len(METRICS)
        self.counts += np.bincount(flat, minlength=size).reshape(self.counts.shape)
        for name, values, kind in (("gmv", ev.amount, PURCHASE), ("dwell_s", ev.dwell, LEAVE)):
            weights = np.where(ev.kind == kind, values, 0.0)
            flat = slot * len(METRICS) + M[name]
            self.counts += np.bincount(flat, weights, minlength=size).reshape(self.counts.shape)
        self._add_products(ev, minute)
        self._add_ids(ev.event_id, minute)
        self.watermark = max(self.watermark, int(ev.ts.max()))

    def _outside_ring(self, ev: Columns, minute: np.ndarray) -> tuple[Columns, np.ndarray]:
        """Events on time for the room whose minute left the ring within this very batch (the
        room jumped ahead): they only count towards online viewers and the product on show."""
        gone = minute < int(self.minute_of.max()) - self.slots + 1
        if not gone.any():
            return ev, minute
        kinds = ev.kind[gone]
        self.online_base += float((kinds == ENTER).sum() - (kinds == LEAVE).sum())
        shows = np.flatnonzero(gone & (ev.kind == PRESENT))
        self._add_products(ev.take(shows), minute[shows])
        keep = np.flatnonzero(~gone)
        return ev.take(keep), minute[keep]

    def _advance(self, newest: int) -> None:
        """Make room for minutes up to ``newest``: older minutes leave the ring."""
        held = self.minute_of
        oldest_kept = newest - self.slots + 1
        leaving = (held >= 0) & (held < oldest_kept)
        if leaving.any():
            self.online_base += float(
                self.counts[leaving, M["enters"]].sum() - self.counts[leaving, M["leaves"]].sum()
            )
            self.counts[leaving] = 0.0
            held[leaving] = -1
            for m in [m for m in self.products if m < oldest_kept]:
                del self.products[m]
            for m in [m for m in self.ids if m < oldest_kept]:
                self.known.difference_update(self.ids.pop(m))
            cut = bisect.bisect_left(self.shows, (oldest_kept * 60, -1, -1))
            del self.shows[: max(cut - 1, 0)]  # keep the product on show when the ring starts
        start = max(oldest_kept, int(held.max()) + 1)  # minutes not yet in the ring
        for m in range(start, newest + 1):
            held[m % self.slots] = m

    def _add_products(self, ev: Columns, minute: np.ndarray) -> None:
        for kind, col in ((CLICK, 0), (CART, 1)):
            pick = ev.kind == kind
            if not pick.any():
                continue
            keys, n = np.unique(
                np.stack([minute[pick], ev.product[pick]]), axis=1, return_counts=True
            )
            for (m, p), c in zip(keys.T.tolist(), n.tolist(), strict=True):
                self.products.setdefault(m, {}).setdefault(p, [0.0, 0.0])[col] += c
        for t, i, p in zip(
            ev.ts[ev.kind == PRESENT].tolist(),
            ev.event_id[ev.kind == PRESENT].tolist(),
            ev.product[ev.kind == PRESENT].tolist(),
            strict=True,
        ):
            bisect.insort(self.shows, (t, i, p))

    def _add_ids(self, ids: np.ndarray, minute: np.ndarray) -> None:
        order = np.argsort(minute, kind="stable")
        m_sorted, ids_sorted = minute[order], ids[order]
        cuts = np.flatnonzero(np.diff(m_sorted)) + 1
        for m_part, id_part in zip(
            np.split(m_sorted, cuts), np.split(ids_sorted, cuts), strict=True
        ):
            new = id_part.tolist()
            self.ids.setdefault(int(m_part[0]), []).extend(new)
            self.known.update(new)

    def on_show(self, minute: int) -> int:
        """The product on show at the end of ``minute`` (-1 if none yet)."""
        i = bisect.bisect_left(self.shows, ((minute + 1) * 60, -1, -1))
        return self.shows[i - 1][2] if i else -1

    def minute_counts(self, minute: int) -> np.ndarray | None:
        s = minute % self.slots
        return self.counts[s] if self.minute_of[s] == minute else None

    def span(self, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
        """(counts (k, metrics), online viewers (k,)) of minutes first..last, vectorised."""
        minutes = np.arange(first, last + 1)
        slot = minutes % self.slots
        held = self.minute_of[slot] == minutes
        counts = np.where(held[:, None], self.counts[slot], 0.0)
        ring = np.flatnonzero(self.minute_of >= 0)
        order = ring[np.argsort(self.minute_of[ring])]
        net = np.cumsum(self.counts[order, M["enters"]] - self.counts[order, M["leaves"]])
        upto = np.searchsorted(self.minute_of[order], minutes, side="right")
        online = self.online_base + np.where(upto > 0, net[np.maximum(upto - 1, 0)], 0.0)
        return counts, online

    def online_at(self, minute: int) -> float:
        """Enters minus leaves of every accepted event up to the end of ``minute``."""
        held = self.minute_of
        upto = (held >= 0) & (held <= minute)
        net = self.counts[upto, M["enters"]].sum() - self.counts[upto, M["leaves"]].sum()
        return self.online_base + float(net)
