"""What a reach decision knows about a viewer, learned from the logs it has seen.

``ReachHistory`` folds each day's logs (the project's event schema and the messages table) into
counts a decision reads: the viewer's active hours (app openings and room entries by local
hour), entries into each streamer's rooms and each category's, follows, and the messages sent
to them with what they did. ``features`` turns (trigger, channel, send time) candidates into
the model's columns (``FEATURES``), from the history as it stood before the day, so the rows a
model is trained on look exactly like the rows it is later asked about.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.market.messages import CHANNELS, fatigue

FEATURES = ("push", "sms", "carted", "streamer_entries", "category_share", "follows",
            "hour_share", "fatigue", "hours_left", "open_rate")  # fmt: skip
HOUR_PRIOR = 4.0  # pseudo-entries spread as the population's hours: a new viewer's hours


@dataclass(frozen=True)
class Clock:
    """Local time of the platform: ``utc_offset_hours``; a business day starts at
    ``day_start_hour`` local (the market's chunks: 05:00)."""

    utc_offset_hours: int = 8
    day_start_hour: int = 5

    def hour(self, ts: np.ndarray) -> np.ndarray:
        return (np.asarray(ts, dtype=np.int64) // 3600 + self.utc_offset_hours) % 24

    def day_start(self, ts: np.ndarray) -> np.ndarray:
        shift = (self.utc_offset_hours - self.day_start_hour) * 3600
        return (np.asarray(ts, dtype=np.int64) + shift) // 86_400 * 86_400 - shift


def streamer_categories(shelf: pd.DataFrame, products: pd.DataFrame) -> pd.Series:
    """Each streamer's category: the most common category of the products it presents."""
    cat = shelf[["streamer_id", "product_id"]].merge(products[["product_id", "category"]])
    counts = cat.groupby(["streamer_id", "category"]).size().rename("n").reset_index()
    top = counts.sort_values(["streamer_id", "n", "category"], ascending=[True, False, True])
    return top.drop_duplicates("streamer_id").set_index("streamer_id")["category"]


class ReachHistory:
    """Counts from the observed logs; ``observe`` one day at a time, in order."""

    def __init__(self, clock: Clock, streamer_category: pd.Series) -> None:
        self.clock, self.streamer_category = clock, streamer_category
        self.hours = pd.DataFrame(columns=range(24), dtype=np.float64)  # user x local hour
        self.pair = pd.Series(dtype=np.float64)  # (user, streamer) entries
        self.follows: set[tuple[int, int]] = set()
        self.sent = pd.DataFrame({"user_id": np.zeros(0, np.int64), "ts": np.zeros(0, np.int64),
                                  "opened": np.zeros(0, bool)})  # fmt: skip
        self._per_cat: pd.Series | None = None
        self._per_user: pd.Series | None = None

    def observe(self, logs: dict[str, pd.DataFrame]) -> None:
        ev = logs["events"]
        enter = ev.loc[ev["event_type"] == "enter"]
        # Active hours from app openings (the requests log, where there is one) and room entries:
        # one sample per opening or visit (the events inside a visit are not independent).
        opened = logs.get("requests", pd.DataFrame({"user_id": [], "ts": []}))
        user = np.r_[enter["user_id"].to_numpy(np.int64), opened["user_id"].to_numpy(np.int64)]
        ts = np.r_[enter["ts"].to_numpy(np.int64), opened["ts"].to_numpy(np.int64)]
        users, row = np.unique(user, return_inverse=True)
        grid = np.zeros((len(users), 24))
        np.add.at(grid, (row, self.clock.hour(ts)), 1.0)
        hours = pd.DataFrame(grid, index=users, columns=range(24))
        self.hours = hours if self.hours.empty else self.hours.add(hours, fill_value=0)
        pair = enter.groupby(["user_id", "streamer_id"]).size().astype(np.float64)
        pair.index = pair.index.set_levels([lvl.astype(np.int64) for lvl in pair.index.levels])
        self.pair = self.pair.add(pair, fill_value=0) if len(self.pair) else pair
        fol = ev.loc[ev["event_type"] == "follow", ["user_id", "streamer_id"]].astype(np.int64)
        self.follows.update(map(tuple, fol.to_numpy().tolist()))
        self._per_cat = self._per_user = None  # category shares: recounted when next asked
        msg = logs.get("messages")
        if msg is not None and len(msg):
            self.sent = pd.concat([self.sent, msg[["user_id", "ts", "opened"]]], ignore_index=True)

    def hour_share(self, user: np.ndarray, hour: np.ndarray) -> np.ndarray:
        """The viewer's share of entries at each local hour, shrunk towards everyone's."""
        grid = self.hours.reindex(pd.Index(user)).fillna(0.0).to_numpy()
        total = self.hours.to_numpy().sum(axis=0)
        prior = total / total.sum() if total.sum() > 0 else np.full(24, 1 / 24)
        rows = grid[np.arange(len(user)), hour] + HOUR_PRIOR * prior[hour]
        return rows / (grid.sum(axis=1) + HOUR_PRIOR)

    def fatigue(self, user: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Messages each viewer got in the ``FATIGUE_DAYS`` before ``ts`` (days seen so far)."""
        s = self.sent
        return fatigue(s["user_id"].to_numpy(np.int64), s["ts"].to_numpy(np.int64), user, ts)

    def open_rate(self, user: np.ndarray) -> np.ndarray:
        """Each viewer's past open rate, shrunk towards everyone's by 5 pseudo-messages."""
        s = self.sent
        if s.empty:
            return np.zeros(len(user))
        mean = float(s["opened"].mean())
        g = s.groupby("user_id")["opened"].agg(["sum", "count"]).reindex(user).fillna(0.0)
        return ((g["sum"] + 5 * mean) / (g["count"] + 5)).to_numpy()

    def category_share(self, user: np.ndarray, streamer: np.ndarray) -> np.ndarray:
        """The share of the viewer's entries that went to the streamer's category."""
        if self.pair.empty:
            return np.zeros(len(user))
        if self._per_cat is None:
            pairs = self.pair.rename("n").reset_index()
            pairs.columns = ["user_id", "streamer_id", "n"]
            pairs["category"] = self.streamer_category.reindex(pairs["streamer_id"]).to_numpy()
            self._per_cat = pairs.groupby(["user_id", "category"])["n"].sum()
            self._per_user = pairs.groupby("user_id")["n"].sum()
        cat = self.streamer_category.reindex(streamer).to_numpy()
        num = self._per_cat.reindex(pd.MultiIndex.from_arrays([user, cat])).fillna(0.0).to_numpy()
        return num / np.maximum(self._per_user.reindex(user).fillna(0.0).to_numpy(), 1.0)


def features(history: ReachHistory, cand: pd.DataFrame) -> np.ndarray:
    """The model's columns (``FEATURES``) of candidates: ``user_id``, ``streamer_id``,
    ``kind``, ``channel``, ``ts`` (send time), ``end_ts`` (the session's end)."""
    user = cand["user_id"].to_numpy(np.int64)
    streamer = cand["streamer_id"].to_numpy(np.int64)
    ts = cand["ts"].to_numpy(np.int64)
    channel = cand["channel"].to_numpy(object)
    key = pd.MultiIndex.from_arrays([user, streamer])
    entries = history.pair.reindex(key).fillna(0.0).to_numpy() if len(history.pair) else 0 * ts
    follows = np.fromiter(((u, s) in history.follows for u, s in zip(user, streamer, strict=True)),
                          dtype=bool, count=len(user))  # fmt: skip
    share = history.hour_share(user, history.clock.hour(ts))
    left = np.maximum(cand["end_ts"].to_numpy(np.int64) - ts, 0) / 3600.0
    carted = cand["kind"].to_numpy() != "followed_streamer_live"
    cols = [channel == "push", channel == "sms", carted,
            np.log1p(entries), history.category_share(user, streamer), follows,
            np.log(24 * share + 0.01), history.fatigue(user, ts), np.log1p(left),
            history.open_rate(user)]  # fmt: skip
    return np.column_stack([np.asarray(c, dtype=np.float64) for c in cols])


__all__ = ["CHANNELS", "FEATURES", "Clock", "ReachHistory", "features", "streamer_categories"]
