"""The requests a serving benchmark sends: recommendations for world users, plus session events.

Most requests ask ``GET /recommend`` for a random user of the world's users table (a share of
them for ids the world does not know, to exercise the cold start); a share are ``POST /events``
batches of 1-``max_batch`` events of one viewer in one room that is live at the service's
clock: an ``enter``, then likes, comments and clicks on products that room has shown. Event
times follow the service's clock as the schedule advances, so the service sees fresh events;
``event_lag_s`` dates each batch up to that many seconds earlier (still in the service's
accepted window), so a click can be old enough to count as hesitation when it is asked about.
A ``coupon_share`` of the requests ask ``GET /coupon`` (label ``coupon``) for a viewer who
clicked a product in one of the last ``hesitant_pool`` clicking batches sent (a random world
user before any click was sent), so the coupon trigger judges real hesitations.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .http_client import HttpRequest

KINDS = ("all", "room", "product")
FOLLOW_UPS = ("like", "comment", "click")
COMMENTS = ("nice!", "how much?", "link please", "love this", "does it ship today?")
ID_LOW, ID_HIGH = 2**40, 2**62  # unknown user ids are drawn here, away from small test ids


@dataclass(frozen=True)
class MixConfig:
    k: int = 20
    kind: str = "all"
    events_share: float = 0.1
    unknown_share: float = 0.03
    max_batch: int = 5
    seed: int = 0
    coupon_share: float = 0.0
    event_lag_s: int = 0
    hesitant_pool: int = 256

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"MixConfig.kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("events_share", "unknown_share", "coupon_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"MixConfig.{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.events_share + self.coupon_share > 1.0:
            raise ValueError(
                f"MixConfig: events_share + coupon_share must be <= 1, got "
                f"{self.events_share} + {self.coupon_share}"
            )
        if self.k < 1 or self.max_batch < 1 or self.hesitant_pool < 1 or self.event_lag_s < 0:
            raise ValueError(
                f"MixConfig: k, max_batch and hesitant_pool must be >= 1, event_lag_s >= 0; "
                f"got {self}"
            )


@dataclass(frozen=True)
class LiveWorld:
    """Who can ask, and which rooms (with the products they have shown) are live at ``now``."""

    users: np.ndarray  # (U,) raw user ids
    rooms: np.ndarray  # (R, 2) session_id, streamer_id of the live sessions
    shelf: pd.DataFrame  # session_id, product_id shown so far in those sessions

    @classmethod
    def at(
        cls, users: pd.DataFrame, sessions: pd.DataFrame, showcase: pd.DataFrame, now: int
    ) -> LiveWorld:
        live = sessions[(sessions["start_ts"] <= now) & (now < sessions["end_ts"])]
        shown = showcase[
            showcase["session_id"].isin(live["session_id"]) & (showcase["start_ts"] <= now)
        ]
        return cls(
            users=users["user_id"].to_numpy(np.int64),
            rooms=live[["session_id", "streamer_id"]].to_numpy(np.int64),
            shelf=shown[["session_id", "product_id"]].drop_duplicates().reset_index(drop=True),
        )


class RequestMix:
    """Seeded request lists; successive calls continue one random stream."""

    def __init__(self, world: LiveWorld, config: MixConfig) -> None:
        if not len(world.users):
            raise ValueError("RequestMix: the world's users table is empty")
        if config.events_share > 0 and not len(world.rooms):
            raise ValueError(
                "RequestMix: no live room at the service's clock to send events about; "
                "start the clock while rooms are live (clock.start=latest_live) or set "
                "events_share=0"
            )
        self.world, self.config = world, config
        self._rng = np.random.default_rng(config.seed)
        self._shelves = {
            int(s): g.to_numpy(np.int64) for s, g in world.shelf.groupby("session_id")["product_id"]
        }
        self._clickers: deque[int] = deque(maxlen=config.hesitant_pool)

    def requests(self, n: int, rps: float, now: int, speed: float = 1.0) -> list[HttpRequest]:
        """``n`` requests for a schedule of ``rps`` starting at service time ``now``."""
        rng, cfg = self._rng, self.config
        users = self._users(n)
        draw = rng.random(n)
        is_event = draw < cfg.events_share
        is_coupon = ~is_event & (draw < cfg.events_share + cfg.coupon_share)
        ts = now + (np.arange(n) / rps * speed).astype(np.int64)
        if cfg.event_lag_s:  # drawn only when asked for: lag-free streams stay as they were
            ts = ts - rng.integers(0, cfg.event_lag_s + 1, n)
        return [
            self._events(int(users[i]), int(ts[i]))
            if is_event[i]
            else self._coupon(int(users[i]))
            if is_coupon[i]
            else self._recommend(int(users[i]))
            for i in range(n)
        ]

    def _users(self, n: int) -> np.ndarray:
        users = self._rng.choice(self.world.users, n)
        unknown = self._rng.random(n) < self.config.unknown_share
        fresh = self._rng.integers(ID_LOW, ID_HIGH, n)
        while np.isin(fresh[unknown], self.world.users).any():  # astronomically rare, but exact
            fresh[unknown] = self._rng.integers(ID_LOW, ID_HIGH, n)[unknown]
        users[unknown] = fresh[unknown]
        return users

    def _recommend(self, user: int) -> HttpRequest:
        target = f"/recommend?user={user}&k={self.config.k}&kind={self.config.kind}"
        return HttpRequest("GET", target, label="recommend")

    def _coupon(self, fallback: int) -> HttpRequest:
        """``GET /coupon`` for a recent clicker (``fallback``, a random user, before any)."""
        pool = self._clickers
        user = pool[int(self._rng.integers(len(pool)))] if pool else fallback
        return HttpRequest("GET", f"/coupon?user={user}", label="coupon")

    def _events(self, user: int, ts: int) -> HttpRequest:
        rng = self._rng
        session, streamer = (int(x) for x in self.world.rooms[rng.integers(len(self.world.rooms))])
        room = {"ts": ts, "user_id": user, "session_id": session, "streamer_id": streamer}
        events = [{**room, "event_type": "enter"}]
        for kind in rng.choice(FOLLOW_UPS, rng.integers(0, self.config.max_batch)):
            events.append(self._follow_up(str(kind), room))
        if any(e["event_type"] == "click" for e in events):
            self._clickers.append(user)
        return HttpRequest("POST", "/events", json.dumps({"events": events}).encode(), "events")

    def _follow_up(self, kind: str, room: dict) -> dict:
        shelf = self._shelves.get(room["session_id"])
        if kind == "click" and shelf is not None:
            return {**room, "event_type": "click", "product_id": int(self._rng.choice(shelf))}
        if kind == "comment":
            return {**room, "event_type": "comment", "comment": str(self._rng.choice(COMMENTS))}
        return {**room, "event_type": "like"}  # also a click in a room that has shown nothing
