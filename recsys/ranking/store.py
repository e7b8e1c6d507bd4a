"""Every live viewer's session state: bounded, thread-safe, and restorable.

``SessionStore`` keeps one ``SessionState`` per viewer in an ``OrderedDict`` ordered by last
update, so both bounds cost O(1) per event: a viewer idle longer than ``ttl_s`` is gone (their
next event starts a fresh session, and reads treat them as absent), and beyond ``max_users``
the least recently updated viewer is evicted. Expired viewers are swept from the old end of the
order as events arrive, so memory follows the viewers active within the TTL.

One lock guards the store: updates and feature reads of different threads never interleave
inside a state. ``snapshot`` / ``restore`` serialise the whole store (config included) as
versioned, compressed JSON, which keeps floats exact and stays readable without this code.
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from recsys.ranking.events import EventColumns, SessionEvent
from recsys.ranking.features import Candidates, session_features
from recsys.ranking.lookup import ItemLookup
from recsys.ranking.session import SessionConfig, SessionState

SNAPSHOT_FORMAT = "recsys.session-store"
SNAPSHOT_VERSION = 1


class SessionStore:
    """Session states of many viewers, keyed by raw user id."""

    def __init__(self, *, lookup: ItemLookup, config: SessionConfig | None = None) -> None:
        self.lookup = lookup
        self.config = config or SessionConfig()
        self._states: OrderedDict[int, SessionState] = OrderedDict()
        self._lock = threading.Lock()
        self.n_expired = 0  # sessions ended by the TTL (swept or restarted)
        self.n_evicted = 0  # sessions dropped by the size cap

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, user: int) -> bool:
        return user in self._states

    def forget(self, users: Iterable[int]) -> int:
        """Drop the session states of ``users`` (erasure); returns how many there were."""
        with self._lock:
            gone = [self._states.pop(int(u), None) for u in users]
        return sum(g is not None for g in gone)

    def update(self, event: SessionEvent) -> None:
        e = event
        self.apply(e.user, e.code, e.ts, e.session, e.streamer, e.product, e.value)

    def update_many(self, events: Iterable[SessionEvent]) -> int:
        n = 0
        for event in events:
            self.update(event)
            n += 1
        return n

    def apply(
        self, user: int, code: int, ts: int, session: int, streamer: int, product: int, value
    ) -> None:
        """Fold one event (fields as in ``SessionState.apply``) into its viewer's state."""
        with self._lock:
            self._apply(user, code, ts, session, streamer, product, value)

    def replay(self, events: EventColumns, start: int = 0, stop: int | None = None) -> None:
        """Fold events ``start``..``stop - 1`` of a logged table, in replay order, holding the
        lock once for the whole run (the per-event update is the one ``apply`` runs)."""
        stop = len(events) if stop is None else stop
        user, code, ts = events.user, events.code, events.ts_list
        session, streamer, product, value = (
            events.session,
            events.streamer,
            events.product,
            events.value,
        )
        apply = self._apply
        with self._lock:
            for j in range(start, stop):
                apply(user[j], code[j], ts[j], session[j], streamer[j], product[j], value[j])

    def _apply(self, user, code, ts, session, streamer, product, value) -> None:
        state = self._states.get(user)
        if state is None or ts - state.last_ts > self.config.ttl_s:
            self.n_expired += state is not None
            state = self._states[user] = SessionState()
        self._states.move_to_end(user)
        state.apply(code, ts, session, streamer, product, value, self.lookup, self.config)
        self._bound(ts)

    def _bound(self, now: int) -> None:
        ttl = self.config.ttl_s
        while self._states:
            user, oldest = next(iter(self._states.items()))
            if now - oldest.last_ts <= ttl:
                break
            del self._states[user]
            self.n_expired += 1
        while len(self._states) > self.config.max_users:
            self._states.popitem(last=False)
            self.n_evicted += 1

    def peek(self, user: int, now: int) -> SessionState | None:
        """The viewer's live state at ``now`` (None when absent or expired); read-only use."""
        state = self._states.get(user)
        if state is None or now - state.last_ts > self.config.ttl_s:
            return None
        return state

    def features(self, user: int, candidates: Candidates, now: int) -> np.ndarray:
        """(n_candidates, n_features) session features of ``user`` at ``now``."""
        with self._lock:
            return session_features(self.peek(user, now), candidates, now, self.lookup, self.config)

    def state_dict(self, user: int, now: int) -> dict | None:
        """A copy of the viewer's state at ``now`` as plain data (None when absent)."""
        with self._lock:
            state = self.peek(user, now)
            return None if state is None else state.to_dict()

    def snapshot(self) -> bytes:
        with self._lock:
            payload = {
                "format": SNAPSHOT_FORMAT,
                "version": SNAPSHOT_VERSION,
                "config": self.config.to_dict(),
                "counters": [self.n_expired, self.n_evicted],
                "states": [[user, s.to_dict()] for user, s in self._states.items()],
            }
        return zlib.compress(json.dumps(payload, separators=(",", ":")).encode(), 6)

    @classmethod
    def restore(cls, data: bytes, *, lookup: ItemLookup) -> SessionStore:
        """The store a ``snapshot`` was taken of (config and viewer order included)."""
        try:
            payload = json.loads(zlib.decompress(data))
        except (zlib.error, ValueError) as err:
            raise ValueError(f"not a session store snapshot: {err}") from None
        if not isinstance(payload, dict) or payload.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"not a session store snapshot (format {SNAPSHOT_FORMAT!r} expected)")
        if payload.get("version") != SNAPSHOT_VERSION:
            raise ValueError(
                f"session store snapshot version {payload.get('version')} is not supported "
                f"(this code reads version {SNAPSHOT_VERSION})"
            )
        store = cls(lookup=lookup, config=SessionConfig(**payload["config"]))
        store.n_expired, store.n_evicted = payload["counters"]
        for user, state in payload["states"]:
            store._states[int(user)] = SessionState.from_dict(state)
        return store

    def save(self, path: str | Path) -> None:
        """Write a snapshot atomically (a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_bytes(self.snapshot())
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, *, lookup: ItemLookup) -> SessionStore:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no session store snapshot at {path}")
        return cls.restore(path.read_bytes(), lookup=lookup)
