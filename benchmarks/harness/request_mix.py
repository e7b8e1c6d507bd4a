"""The requests a serving benchmark sends: recommendations for world users, plus session events.

Most requests ask ``GET /recommend`` for a random user of the world's users table (a share of
them for ids the world does not know, to exercise the cold start); a share are ``POST /events``
batches of 1-``max_batch`` events of one viewer in one room that is live at the service's
clock: an ``enter``, then likes, comments and clicks on products that room has shown. Event
times follow the service's clock as the schedule advances, so the service sees fresh events.
"""

from __future__ import annotations

import json
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

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"MixConfig.kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("events_share", "unknown_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"MixConfig.{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.k < 1 or self.max_batch < 1:
            raise ValueError(f"MixConfig: k and max_batch must be >= 1, got {self}")


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

    def requests(self, n: int, rps: float, now: int, speed: float = 1.0) -> list[HttpRequest]:
        """``n`` requests for a schedule of ``rps`` starting at service time ``now``."""
        rng, cfg = self._rng, self.config
        users = self._users(n)
        is_event = rng.random(n) < cfg.events_share
        ts = now + (np.arange(n) / rps * speed).astype(np.int64)
        return [
            self._events(int(users[i]), int(ts[i]))
            if is_event[i]
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

    def _events(self, user: int, ts: int) -> HttpRequest:
        rng = self._rng
        session, streamer = (int(x) for x in self.world.rooms[rng.integers(len(self.world.rooms))])
        room = {"ts": ts, "user_id": user, "session_id": session, "streamer_id": streamer}
        events = [{**room, "event_type": "enter"}]
        for kind in rng.choice(FOLLOW_UPS, rng.integers(0, self.config.max_batch)):
            events.append(self._follow_up(str(kind), room))
        return HttpRequest("POST", "/events", json.dumps({"events": events}).encode(), "events")

    def _follow_up(self, kind: str, room: dict) -> dict:
        shelf = self._shelves.get(room["session_id"])
        if kind == "click" and shelf is not None:
            return {**room, "event_type": "click", "product_id": int(self._rng.choice(shelf))}
        if kind == "comment":
            return {**room, "event_type": "comment", "comment": str(self._rng.choice(COMMENTS))}
        return {**room, "event_type": "like"}  # also a click in a room that has shown nothing
