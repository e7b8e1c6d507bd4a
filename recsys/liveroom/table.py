"""Every live room's counters in shared arrays, folded a whole batch at a time.

A room is a row: ``counts[row, slot, metric]`` holds minute ``minute_of[row, slot]``. A batch
of events of many rooms is folded with a handful of vectorised passes (no loop over events or
rooms, only over the few (room, minute) groups a batch touches for ids, products and ring
moves), which is what keeps a replay above half a million events a second on one core.

Per batch: (1) copies of an event id already accepted, or repeated in the batch, are
duplicates; (2) an event older than its room's watermark before it (in arrival order) minus
the lateness is too late: the running maximum per room is one ``maximum.accumulate`` over
the events sorted by room, each room offset so that it starts from its own watermark;
(3) each room's ring moves forward to its newest minute: minutes leaving it add their enters
minus leaves to ``online_base``, their products and event ids are forgotten (any copy of such
an event is too late anyway, the ring spanning more than the lateness); (4) counts are added
with ``np.add.at``. Rows of ended rooms are cleared and reused.
"""

from __future__ import annotations

import bisect
from collections import Counter

import numpy as np

from recsys.liveroom.events import Columns
from recsys.liveroom.room import (
    CART,
    CLICK,
    ENTER,
    KIND_METRIC,
    LEAVE,
    METRICS,
    PRESENT,
    PURCHASE,
    M,
)

_SHIFT = 36  # bits of one room's time range in the running-maximum trick (~2,000 years)


class RoomTable:
    def __init__(self, *, slots: int, lateness_s: int, capacity: int = 64) -> None:
        self.slots, self.lateness_s = slots, lateness_s
        self.row_of: dict[int, int] = {}
        self.free: list[int] = []
        self.known: set[int] = set()  # ids of accepted events still in some room's ring
        self._grow(capacity)

    def _grow(self, capacity: int) -> None:
        old = getattr(self, "watermark", np.zeros(0))
        n, extra = len(old), capacity - len(old)

        def widen(name, shape, fill, dtype):
            fresh = np.full((extra, *shape), fill, dtype=dtype)
            current = getattr(self, name, None)
            setattr(self, name, fresh if current is None else np.concatenate([current, fresh]))

        widen("counts", (self.slots, len(METRICS)), 0.0, np.float64)
        widen("minute_of", (self.slots,), -1, np.int64)
        widen("online_base", (), 0.0, np.float64)
        widen("watermark", (), -1, np.int64)
        widen("first_ts", (), -1, np.int64)
        self.products = getattr(self, "products", []) + [{} for _ in range(extra)]
        self.shows = getattr(self, "shows", []) + [[] for _ in range(extra)]
        self.ids = getattr(self, "ids", []) + [{} for _ in range(extra)]
        self.free += list(range(capacity - 1, n - 1, -1))

    def row(self, room: int) -> int:
        if room not in self.row_of:
            if not self.free:
                self._grow(2 * len(self.watermark))
            self.row_of[room] = self.free.pop()
        return self.row_of[room]

    def drop(self, room: int) -> None:
        """Forget an ended room; its row is cleared for the next room."""
        r = self.row_of.pop(room)
        for ids in self.ids[r].values():
            self.known.difference_update(ids)
        self.counts[r], self.minute_of[r] = 0.0, -1
        self.online_base[r], self.watermark[r], self.first_ts[r] = 0.0, -1, -1
        self.products[r], self.shows[r], self.ids[r] = {}, [], {}
        self.free.append(r)

    def fold(self, ev: Columns, rows: np.ndarray) -> tuple[np.ndarray, int, int]:
        """Fold events of rows ``rows``; returns (accepted mask, duplicates, too late)."""
        fresh = np.zeros(len(ev), dtype=bool)
        fresh[np.unique(ev.event_id, return_index=True)[1]] = True
        ids, known = ev.event_id.tolist(), self.known
        if not known.isdisjoint(ids):  # the common case, new ids only, costs one C loop
            fresh &= ~np.fromiter((i in known for i in ids), bool, len(ev))
        on_time = np.zeros(len(ev), dtype=bool)
        on_time[fresh] = self._on_time(ev.ts[fresh], rows[fresh])
        if on_time.any():
            self._add(ev.take(np.flatnonzero(on_time)), rows[on_time])
        return on_time, int((~fresh).sum()), int((fresh & ~on_time).sum())

    def _on_time(self, ts: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Not older than the room's running watermark (arrival order) minus the lateness."""
        if not len(ts):
            return np.zeros(0, dtype=bool)
        order = np.argsort(rows, kind="stable")
        r, t = rows[order], ts[order]
        t0 = min(int(t.min()), int(self.watermark[r].min())) - 1
        group = np.cumsum(np.r_[True, r[1:] != r[:-1]]).astype(np.int64) << _SHIFT
        first = np.r_[True, r[1:] != r[:-1]]
        seed = group + np.maximum(self.watermark[r] - t0, 0)
        running = np.maximum.accumulate(group + (t - t0))
        before = np.where(first, seed, np.maximum(np.r_[0, running[:-1]], seed)) - group + t0
        ok = np.empty(len(ts), dtype=bool)
        ok[order] = t >= before - self.lateness_s
        return ok

    def _add(self, ev: Columns, rows: np.ndarray) -> None:
        minute = ev.ts // 60
        newest = np.full(len(self.watermark), -1, dtype=np.int64)
        np.maximum.at(newest, rows, minute)
        touched = np.flatnonzero(newest >= 0)
        self._advance(touched, newest[touched])
        head = self.minute_of.max(axis=1)
        gone = minute < head[rows] - self.slots + 1  # its minute left the ring in this batch
        if gone.any():
            net = (ev.kind[gone] == ENTER).astype(float) - (ev.kind[gone] == LEAVE)
            np.add.at(self.online_base, rows[gone], net)
        keep = ~gone
        slot = minute % self.slots
        metric = KIND_METRIC[ev.kind]
        counted = keep & (metric >= 0)
        cell = (rows * self.slots + slot) * len(METRICS)
        self._count(cell[counted] + metric[counted], None)
        for name, values, kind in (("gmv", ev.amount, PURCHASE), ("dwell_s", ev.dwell, LEAVE)):
            pick = keep & (ev.kind == kind)
            self._count(cell[pick] + M[name], values[pick])
        self._add_products(ev, rows, minute, keep)
        self._add_ids(ev.event_id[keep], rows[keep], minute[keep])
        np.maximum.at(self.watermark, rows, ev.ts)
        unset = self.first_ts[touched] < 0
        if unset.any():
            first = np.full(len(self.watermark), np.iinfo(np.int64).max)
            np.minimum.at(first, rows, ev.ts)
            self.first_ts[touched[unset]] = first[touched[unset]]

    def _count(self, flat: np.ndarray, weights: np.ndarray | None) -> None:
        """Add 1 (or ``weights``) at flat indexes of ``counts``: one bincount over the whole
        table when the batch is large next to it, else ``np.add.at`` on the cells touched."""
        table = self.counts.reshape(-1)
        if 4 * len(flat) >= len(table):
            table += np.bincount(flat, weights, minlength=len(table))
        else:
            np.add.at(table, flat, 1.0 if weights is None else weights)

    def _advance(self, rows: np.ndarray, newest: np.ndarray) -> None:
        """Move each room's ring forward so it ends at its newest minute."""
        held = self.minute_of[rows]
        head = held.max(axis=1)
        moving = newest > head
        rows, newest, held, head = rows[moving], newest[moving], held[moving], head[moving]
        if not len(rows):
            return
        oldest = newest - self.slots + 1
        leaving = (held >= 0) & (held < oldest[:, None])
        counts = self.counts[rows]
        net = (counts[:, :, M["enters"]] - counts[:, :, M["leaves"]]) * leaving
        self.online_base[rows] += net.sum(axis=1)
        counts[leaving] = 0.0
        held[leaving] = -1
        start = np.maximum(head + 1, oldest)
        n = newest - start + 1
        which = np.repeat(np.arange(len(rows)), n)
        minutes = np.repeat(start, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
        held[which, minutes % self.slots] = minutes
        self.counts[rows], self.minute_of[rows] = counts, held
        for r, first in zip(
            rows[leaving.any(axis=1)].tolist(), oldest[leaving.any(axis=1)].tolist(), strict=True
        ):
            self._forget(r, first)

    def _forget(self, r: int, first: int) -> None:
        """Products, ids and shows of room row ``r`` from before minute ``first``."""
        products, ids = self.products[r], self.ids[r]
        for m in [m for m in products if m < first]:
            del products[m]
        for m in [m for m in ids if m < first]:
            self.known.difference_update(ids.pop(m))
        shows = self.shows[r]
        cut = bisect.bisect_left(shows, (first * 60, -1, -1))
        del shows[: max(cut - 1, 0)]  # keep the product on show when the ring starts

    def _add_products(self, ev: Columns, rows, minute, keep) -> None:
        for kind, col in ((CLICK, 0), (CART, 1)):
            pick = keep & (ev.kind == kind)
            if not pick.any():
                continue
            keys = zip(
                rows[pick].tolist(), minute[pick].tolist(), ev.product[pick].tolist(), strict=True
            )
            for (r, m, p), c in Counter(keys).items():
                self.products[r].setdefault(m, {}).setdefault(p, [0.0, 0.0])[col] += c
        shows = np.flatnonzero(ev.kind == PRESENT)
        for r, t, i, p in zip(
            rows[shows].tolist(),
            ev.ts[shows].tolist(),
            ev.event_id[shows].tolist(),
            ev.product[shows].tolist(),
            strict=True,
        ):
            bisect.insort(self.shows[r], (t, i, p))

    def _add_ids(self, ids: np.ndarray, rows: np.ndarray, minute: np.ndarray) -> None:
        order = np.lexsort((minute, rows))
        r, m, i = rows[order].tolist(), minute[order].tolist(), ids[order].tolist()
        bounds = np.flatnonzero(np.diff(rows[order]) | np.diff(minute[order])) + 1
        for a, b in zip([0, *bounds.tolist()], [*bounds.tolist(), len(i)], strict=True):
            if b > a:
                self.ids[r[a]].setdefault(m[a], []).extend(i[a:b])
        self.known.update(i)
