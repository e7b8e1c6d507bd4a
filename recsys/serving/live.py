"""What is on air at a given moment: live rooms and the products on their shelves.

A room is live while one of its sessions is on air (closed interval ``[start_ts, end_ts]``, as
in ``recsys.data.availability``). A product is live while it is on the showcase list of a live
session (the whole broadcast, as the live split's default ``shelf='session'``); ``on_show``
says whether its own showcase slot is running right now.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from recsys.data.availability import gather_rows, sorted_unique


@dataclass(frozen=True)
class LiveRooms:
    streamer: np.ndarray  # (R,) int64
    session: np.ndarray  # (R,) int64


@dataclass(frozen=True)
class LiveProducts:
    product: np.ndarray  # (P,) int64; a product on several live shelves appears once per shelf
    streamer: np.ndarray  # (P,) the room showing it
    session: np.ndarray  # (P,)
    on_show: np.ndarray  # (P,) bool: its showcase slot covers now

    @cached_property
    def _by_product(self) -> tuple[np.ndarray, np.ndarray]:
        """(stable order sorting the rows by product, the products in that order); built once
        per shelf, which requests in the same second share."""
        order = np.argsort(self.product, kind="stable")
        return order, self.product[order]

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Ascending rows showing one of ``ids``, i.e. ``flatnonzero(isin(product, ids))``: each
        id is searched in the sorted shelf, so the cost grows with ``ids``, not the shelf."""
        order, product = self._by_product
        ids = sorted_unique(ids)
        lo = np.searchsorted(product, ids, side="left")
        counts = np.searchsorted(product, ids, side="right") - lo
        starts = np.zeros(len(ids), dtype=np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        at = np.arange(int(counts.sum())) + np.repeat(lo - starts, counts)
        return np.sort(order[at])


def _require(frame: pd.DataFrame, table: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"table {table!r}: missing columns {missing}")


class LiveCatalog:
    """Live rooms and shelves at any time, from the live_sessions and showcase tables."""

    def __init__(self, live_sessions: pd.DataFrame, showcase: pd.DataFrame) -> None:
        _require(
            live_sessions, "live_sessions", ("session_id", "streamer_id", "start_ts", "end_ts")
        )
        _require(showcase, "showcase", ("session_id", "product_id", "start_ts", "end_ts"))
        s = live_sessions.sort_values("session_id", kind="stable")
        self.session = s["session_id"].to_numpy(np.int64)
        self.streamer = s["streamer_id"].to_numpy(np.int64)
        self.start = s["start_ts"].to_numpy(np.int64)
        self.end = s["end_ts"].to_numpy(np.int64)
        pos = np.searchsorted(self.session, showcase["session_id"].to_numpy(np.int64))
        pos = np.minimum(pos, max(len(self.session) - 1, 0))
        known = (
            self.session[pos] == showcase["session_id"].to_numpy(np.int64)
            if len(self.session)
            else np.zeros(len(showcase), dtype=bool)
        )
        if not known.all():
            orphan = showcase["session_id"].iloc[int(np.flatnonzero(~known)[0])]
            raise ValueError(
                f"table 'showcase': session_id {orphan} is not in table 'live_sessions'"
            )
        order = np.argsort(pos, kind="stable")  # showcase rows grouped by session position
        self.shelf_session_pos = pos[order]
        self.shelf_product = showcase["product_id"].to_numpy(np.int64)[order]
        self.shelf_start = showcase["start_ts"].to_numpy(np.int64)[order]
        self.shelf_end = showcase["end_ts"].to_numpy(np.int64)[order]
        self.shelf_indptr = np.searchsorted(
            self.shelf_session_pos, np.arange(len(self.session) + 1)
        )
        self._last_products: tuple[int, LiveProducts] | None = None

    def _live_positions(self, now: int) -> np.ndarray:
        return np.flatnonzero((self.start <= now) & (now <= self.end))

    def rooms(self, now: int) -> LiveRooms:
        """One row per streamer on air (its earliest-starting live session)."""
        live = self._live_positions(now)
        live = live[np.lexsort((self.start[live], self.streamer[live]))]
        first = np.ones(len(live), dtype=bool)
        first[1:] = self.streamer[live][1:] != self.streamer[live][:-1]
        live = live[first]
        return LiveRooms(self.streamer[live], self.session[live])

    def products(self, now: int) -> LiveProducts:
        cached = self._last_products  # one read: safe against a concurrent replacement
        if cached is not None and cached[0] == now:
            return cached[1]
        out = self._products(now)
        self._last_products = (now, out)  # requests in the same second share the shelf
        return out

    def _products(self, now: int) -> LiveProducts:
        live = self._live_positions(now)
        ptr, rows = gather_rows(self.shelf_indptr, np.arange(len(self.shelf_product)), live)
        session_pos = np.repeat(live, np.diff(ptr))
        return LiveProducts(
            product=self.shelf_product[rows],
            streamer=self.streamer[session_pos],
            session=self.session[session_pos],
            on_show=(self.shelf_start[rows] <= now) & (now <= self.shelf_end[rows]),
        )

    def live_streamers(self, now: int) -> set[int]:
        return set(self.streamer[self._live_positions(now)].tolist())
