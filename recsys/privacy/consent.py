"""Consent per purpose, stored with the data and asked before anything is personalised.

A world folder may hold ``consent.parquet``: one row per decision a viewer took, in
``CONSENT_COLUMNS`` (user_id, purpose, channel, granted, ts). Purposes (``PURPOSES``):

* ``personalisation``: recommendations from the viewer's history and session, profiles, tags;
* ``marketing``: messages, per channel (``CHANNELS``: in_app, push, sms; channel ``""`` on a
  marketing row speaks for every channel at once);
* ``coupons``: coupons chosen for the viewer in particular.

The latest decision (by ``ts``, then by row order) for a (viewer, purpose, channel) holds; a
viewer with no decision gets ``default`` (True: the platform's terms grant every purpose until
withdrawn, the usual opt-out setting; False for opt-in). ``ConsentBook`` answers many viewers at
once (``allowed``), takes new decisions while a service runs (``decide``: the next request sees
them) and writes the table back atomically.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# The table's schema lives with the others, so that recsys-ingest can map a platform's own.
from recsys.data.schema import CONSENT, CONSENT_FILE
from recsys.data.schema import CONSENT_CHANNELS as CHANNELS
from recsys.data.schema import CONSENT_PURPOSES as PURPOSES

CONSENT_COLUMNS = tuple(CONSENT.names)
ALL_CHANNELS = ""


@dataclass(frozen=True)
class Decision:
    """One viewer's decision on one purpose (and, for marketing, one channel or all)."""

    user_id: int
    purpose: str
    granted: bool
    ts: int
    channel: str = ALL_CHANNELS

    def __post_init__(self) -> None:
        check_key(self.purpose, self.channel, where="consent decision")


def check_key(purpose: str, channel: str, *, where: str) -> None:
    if purpose not in PURPOSES:
        raise ValueError(f"{where}: purpose {purpose!r} is not one of {PURPOSES}")
    if channel != ALL_CHANNELS and (purpose != "marketing" or channel not in CHANNELS):
        raise ValueError(
            f"{where}: channel {channel!r} is not valid for purpose {purpose!r} "
            f"(marketing takes one of {CHANNELS} or '' for all; others take '')"
        )


class ConsentBook:
    """The latest decision per (viewer, purpose, channel); thread-safe."""

    def __init__(self, decisions: Iterable[Decision] = (), *, default: bool = True) -> None:
        self.default = default
        self._latest: dict[tuple[str, str], dict[int, tuple[int, bool]]] = {}
        self._log: list[Decision] = []
        self._lock = threading.Lock()
        for d in decisions:
            self.decide(d)

    def decide(self, decision: Decision) -> None:
        """Record a decision; every later question sees it (a tie in ``ts`` goes to the later
        call)."""
        with self._lock:
            book = self._latest.setdefault((decision.purpose, decision.channel), {})
            old = book.get(decision.user_id)
            if old is None or decision.ts >= old[0]:
                book[decision.user_id] = (decision.ts, decision.granted)
            self._log.append(decision)

    def allowed(self, users, purpose: str, channel: str = ALL_CHANNELS) -> np.ndarray:
        """(n,) bool: whether each viewer of ``users`` allows ``purpose`` (on ``channel``)."""
        check_key(purpose, channel, where="ConsentBook.allowed")
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        with self._lock:
            own = self._latest.get((purpose, channel), {})
            broad = self._latest.get((purpose, ALL_CHANNELS), {}) if channel else {}
            out = np.full(len(users), self.default, dtype=bool)
            for i, u in enumerate(users.tolist()):
                a, b = own.get(u), broad.get(u)
                latest = a if b is None or (a is not None and a[0] >= b[0]) else b
                if latest is not None:
                    out[i] = latest[1]
        return out

    def allows(self, user: int, purpose: str, channel: str = ALL_CHANNELS) -> bool:
        return bool(self.allowed([user], purpose, channel)[0])

    def withheld(self, purpose: str, channel: str = ALL_CHANNELS) -> np.ndarray:
        """Sorted ids of the viewers with a decision on record who do not allow ``purpose``
        (viewers without one follow ``default``)."""
        with self._lock:
            users = set(self._latest.get((purpose, channel), {}))
            users |= set(self._latest.get((purpose, ALL_CHANNELS), {}))
        ids = np.array(sorted(users), dtype=np.int64)
        return ids[~self.allowed(ids, purpose, channel)] if len(ids) else ids

    def keep_events(self, events: pd.DataFrame, purpose: str = "personalisation") -> pd.DataFrame:
        """The rows of ``events`` (a ``user_id`` column) whose viewer allows ``purpose``."""
        if not len(events):
            return events
        users = events["user_id"].to_numpy(np.int64)
        unique, inverse = np.unique(users, return_inverse=True)
        return events[self.allowed(unique, purpose)[inverse]]

    def wide(self, users) -> pd.DataFrame:
        """One row per viewer: ``user_id``, a bool column per channel (marketing), then
        ``personalisation`` and ``coupons``: the market's view of consent."""
        users = np.asarray(users, dtype=np.int64)
        out = pd.DataFrame({"user_id": users})
        for channel in CHANNELS:
            out[channel] = self.allowed(users, "marketing", channel)
        for purpose in ("personalisation", "coupons"):
            out[purpose] = self.allowed(users, purpose)
        return out

    def describe(self) -> dict:
        """What ``/healthz`` says of the book."""
        return {"consent": "in-process", "consent_decisions": len(self._log)}

    def table(self) -> pd.DataFrame:
        """Every decision taken, in ``CONSENT_COLUMNS`` and order."""
        with self._lock:
            rows = list(self._log)
        return pd.DataFrame({
            "user_id": np.array([d.user_id for d in rows], dtype=np.int64),
            "purpose": pd.array([d.purpose for d in rows], dtype="string"),
            "channel": pd.array([d.channel for d in rows], dtype="string"),
            "granted": np.array([d.granted for d in rows], dtype=bool),
            "ts": np.array([d.ts for d in rows], dtype=np.int64),
        })  # fmt: skip

    def forget(self, users) -> int:
        """Drop every decision of ``users`` (erasure); returns how many rows went."""
        gone = set(np.asarray(users, dtype=np.int64).tolist())
        with self._lock:
            kept = [d for d in self._log if d.user_id not in gone]
            removed = len(self._log) - len(kept)
        if removed:
            fresh = ConsentBook(kept, default=self.default)
            with self._lock:
                self._latest, self._log = fresh._latest, fresh._log
        return removed

    @classmethod
    def from_table(cls, frame: pd.DataFrame, *, default: bool = True, source: str = "consent"):
        missing = [c for c in CONSENT_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{source}: missing column(s) {missing}; need {CONSENT_COLUMNS}")
        order = np.argsort(frame["ts"].to_numpy(np.int64), kind="stable")
        decisions = []
        for row in order.tolist():
            r = frame.iloc[row]
            channel = "" if pd.isna(r["channel"]) else str(r["channel"])
            try:
                decisions.append(Decision(int(r["user_id"]), str(r["purpose"]),
                                          bool(r["granted"]), int(r["ts"]), channel))  # fmt: skip
            except ValueError as err:
                raise ValueError(f"{source}, row {row}: {err}") from None
        return cls(decisions, default=default)

    @classmethod
    def read(cls, folder: str | Path, *, default: bool = True) -> ConsentBook:
        """The book of a world folder (an empty one when it holds no ``consent.parquet``)."""
        path = Path(folder) / CONSENT_FILE
        if not path.is_file():
            return cls(default=default)
        return cls.from_table(pd.read_parquet(path), default=default, source=str(path))

    def write(self, folder: str | Path) -> Path:
        """``folder/consent.parquet``, replaced atomically (temp file, then rename)."""
        path = Path(folder) / CONSENT_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        self.table().to_parquet(tmp, index=False)
        os.replace(tmp, path)
        return path


def plant_opt_outs(users, *, share: float, seed: int, ts: int = 0) -> ConsentBook:
    """A book where a seeded ``share`` of ``users`` withdrew every purpose and channel at
    ``ts`` (the synthetic world's opted-out viewers); the others keep the default."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"plant_opt_outs: share must be in [0, 1], got {share}")
    users = np.asarray(users, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(19,)))
    out = users[rng.random(len(users)) < share]
    return ConsentBook(
        Decision(int(u), p, False, ts) for u in out.tolist() for p in PURPOSES
    )  # fmt: skip
