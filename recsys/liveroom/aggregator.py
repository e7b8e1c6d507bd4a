"""The streaming room aggregator: sliding 1, 5 and 15-minute windows per live room.

Rules (``batch.py`` recomputes the same numbers from a plain event table, and a test holds the
two equal):

* an event whose id was already accepted (while its room's ring still holds it) is a
  ``duplicate`` and ignored;
* an event older than the room's watermark (its largest accepted event time so far, in
  arrival order) minus ``lateness_s`` is ``too_late``: counted, not folded in; any later
  event is folded into its own minute, however it arrived;
* a room whose newest event is ``expire_after_s`` behind the newest event of any room has
  ended: its state is dropped and events that still come for it are counted as ``expired``.

A window of k minutes ending at minute ``M`` (the minute of the room's watermark)
holds minutes ``M - k + 1 .. M``. Its numbers: totals of every counter, per-minute rates,
online viewers at the end of ``M`` (enters minus leaves so far, never below 0), mean dwell of
the visits that ended in it, and the CTR of the product on show: clicks on the product on show
at each minute's end over the viewer-minutes (online viewers at each minute's end) of the
window.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields

import numpy as np

from recsys.liveroom.events import Columns
from recsys.liveroom.room import METRICS, M, RoomState
from recsys.liveroom.table import RoomTable


@dataclass(frozen=True)
class AggregatorConfig:
    windows: tuple[int, ...] = (1, 5, 15)
    lateness_s: int = 30
    expire_after_s: int = 1800
    max_ended: int = 100_000  # ended room ids remembered (to count their stragglers)
    top_products: int = 10

    def __post_init__(self) -> None:
        if not self.windows or min(self.windows) < 1:
            raise ValueError(f"AggregatorConfig.windows must be >= 1 minute, got {self.windows}")
        if self.lateness_s < 0 or self.expire_after_s <= self.lateness_s:
            raise ValueError(
                "AggregatorConfig needs 0 <= lateness_s < expire_after_s, got "
                f"{self.lateness_s}, {self.expire_after_s}"
            )

    @property
    def slots(self) -> int:
        """Minutes each room holds: the longest window plus the lateness, with a spare."""
        return max(self.windows) + -(-self.lateness_s // 60) + 2


@dataclass
class IngestReport:
    accepted: int = 0
    duplicates: int = 0
    too_late: int = 0
    expired: int = 0
    rejected: int = 0
    sanitised: int = 0

    def __iadd__(self, other: IngestReport) -> IngestReport:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class RoomAggregator:
    """Per-room windows over a stream of event batches (see the module docstring)."""

    def __init__(self, config: AggregatorConfig = AggregatorConfig()) -> None:
        self.config = config
        self.table = RoomTable(slots=config.slots, lateness_s=config.lateness_s)
        self.rooms: dict[int, RoomState] = {}
        self.ended: OrderedDict[int, None] = OrderedDict()
        self.clock = -1  # the newest accepted event time over all rooms

    def ingest(self, ev: Columns) -> tuple[IngestReport, Columns]:
        """Fold a batch in; returns what happened and the accepted events (arrival order)."""
        report = IngestReport(sanitised=ev.sanitised)
        rooms, inverse = np.unique(ev.room, return_inverse=True)
        alive = np.array([r not in self.ended for r in rooms.tolist()], dtype=bool)
        live = alive[inverse]
        report.expired = int((~live).sum())
        index = np.flatnonzero(live)
        row_of = np.array(
            [
                self._row(r) if ok else -1
                for r, ok in zip(rooms.tolist(), alive.tolist(), strict=True)
            ],
            dtype=np.int64,
        )
        part = ev.take(index)
        accepted, report.duplicates, report.too_late = self.table.fold(part, row_of[inverse[index]])
        report.accepted = int(accepted.sum())
        if report.accepted:
            self.clock = max(self.clock, int(part.ts[accepted].max()))
        self._expire()
        return report, part.take(np.flatnonzero(accepted))

    def _row(self, room: int) -> int:
        if room not in self.rooms:
            self.rooms[room] = RoomState(self.table, room, self.table.row(room))
        return self.rooms[room].row

    def _expire(self) -> None:
        cutoff = self.clock - self.config.expire_after_s
        rows = np.array([s.row for s in self.rooms.values()], dtype=np.int64)
        if not len(rows) or self.table.watermark[rows].min() >= cutoff:
            return
        for room in [r for r, s in self.rooms.items() if s.watermark < cutoff]:
            del self.rooms[room]
            self.table.drop(room)
            self.ended[room] = None
        while len(self.ended) > self.config.max_ended:
            self.ended.popitem(last=False)

    def live_rooms(self) -> list[int]:
        return sorted(self.rooms)

    def snapshot(self, room: int) -> dict:
        """Every window of ``room`` ending at the minute of its watermark; KeyError if unknown."""
        state = self.rooms.get(room)
        if state is None:
            raise KeyError(room)
        minute, longest = state.watermark // 60, max(self.config.windows)
        windows = {str(k): _window(state, minute, k) for k in self.config.windows}
        return {
            "room": room,
            "watermark": state.watermark,
            "minute": minute,
            "on_show": state.on_show(minute),
            "windows": windows,
            "products": _products(state, minute, longest, self.config.top_products),
            "series": _series(state, minute, longest),
        }


def _window(state: RoomState, minute: int, k: int) -> dict:
    totals = np.zeros(len(METRICS))
    viewer_minutes, clicks_on_show = 0.0, 0.0
    for m in range(minute - k + 1, minute + 1):
        counts = state.minute_counts(m)
        if counts is not None:
            totals += counts
        online = max(state.online_at(m), 0.0)
        viewer_minutes += online
        shown = state.on_show(m)
        clicks_on_show += state.products.get(m, {}).get(shown, (0.0, 0.0))[0]
    out = {name: float(totals[i]) for i, name in enumerate(METRICS)}
    leaves = totals[M["leaves"]]
    out.update(
        minutes=k,
        online=max(state.online_at(minute), 0.0),
        entries_per_min=out["enters"] / k,
        orders_per_min=out["orders"] / k,
        gmv_per_min=out["gmv"] / k,
        mean_dwell_s=out["dwell_s"] / leaves if leaves else None,
        viewer_minutes=viewer_minutes,
        ctr_on_show=clicks_on_show / viewer_minutes if viewer_minutes else None,
    )
    return out


def _products(state: RoomState, minute: int, k: int, top: int) -> list[dict]:
    clicks: dict[int, list[float]] = {}
    for m in range(minute - k + 1, minute + 1):
        online = max(state.online_at(m), 0.0)
        shown = state.on_show(m)
        if shown >= 0:
            # clicks, carts, clicks while on show, viewer-minutes on show
            row = clicks.setdefault(shown, [0.0, 0.0, 0.0, 0.0])
            row[3] += online
            row[2] += state.products.get(m, {}).get(shown, (0.0, 0.0))[0]
        for p, (c, a) in state.products.get(m, {}).items():
            row = clicks.setdefault(p, [0.0, 0.0, 0.0, 0.0])
            row[0] += c
            row[1] += a
    rows = [
        {"product": p, "clicks": r[0], "carts": r[1], "ctr_on_show": r[2] / r[3] if r[3] else None}
        for p, r in clicks.items()
    ]
    rows.sort(key=lambda r: (-r["clicks"], -r["carts"], r["product"]))
    return rows[:top]


def _series(state: RoomState, minute: int, k: int) -> dict:
    minutes = list(range(minute - k + 1, minute + 1))
    rows = [state.minute_counts(m) for m in minutes]
    return {
        "minute": minutes,
        "online": [max(state.online_at(m), 0.0) for m in minutes],
        "gmv": [float(r[M["gmv"]]) if r is not None else 0.0 for r in rows],
        "comments": [float(r[M["comments"]]) if r is not None else 0.0 for r in rows],
        "clicks": [float(r[M["clicks"]]) if r is not None else 0.0 for r in rows],
    }
