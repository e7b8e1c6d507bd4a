"""Live state shared by worker processes: the ordered log of accepted events.

A recommender's live state (sessions, popularity) is a deterministic fold of the events it
took, in order. So the state that several workers must share is the *order of events*, not
the objects built from it: ``EventLog`` is that order, and ``SharedStateService`` keeps a
recommender's state equal to the fold of the whole log by applying, before every call, the
events the log has gained since this process last read it (its own included). Every worker
then answers any viewer exactly as one in-process service fed the same sequence would, and
an event is acknowledged only once the log holds it, so a worker killed at any moment loses
nothing that was acknowledged: its replacement replays the log.

Backends: ``LocalEventLog`` (one process; what ``SharedStateService`` over it computes equals
the plain service), and ``RedisEventLog`` (``recsys.serving.redis_log``) shared by the
processes of ``recsys-serve workers=N state.backend=redis``. Memory: each worker holds its own
copy of the folded state (bounded by ``SessionConfig.max_users``); the log grows with the
events posted since the service started.
"""

from __future__ import annotations

import json
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence

from recsys.data.schema import EVENT_TYPES
from recsys.ranking.events import SessionEvent
from recsys.serving.protocol import ITEM_KINDS, Recommendation, RecommenderService


def encode_batch(events: Sequence[SessionEvent]) -> bytes:
    """A batch as compact JSON rows ``[ts, user, type code, session, streamer, product,
    value or null]`` (exact: ints as ints, floats with their repr)."""
    rows = [
        [e.ts, e.user, e.code, e.session, e.streamer, e.product, _value(e.value)] for e in events
    ]
    return json.dumps(rows, separators=(",", ":")).encode()


def _value(value: float) -> float | None:
    return None if math.isnan(value) else value


def decode_batch(data: bytes) -> list[SessionEvent]:
    return [
        SessionEvent(ts, user, EVENT_TYPES[code], session, streamer, product,
                     math.nan if value is None else float(value))
        for ts, user, code, session, streamer, product, value in json.loads(data)
    ]  # fmt: skip


class EventLog(ABC):
    """Accepted events in the one order every reader applies them in."""

    @abstractmethod
    def append(self, events: Sequence[SessionEvent]) -> None:
        """Add a batch at the end; when this returns, every reader will see it."""

    @abstractmethod
    def read_new(self) -> list[SessionEvent]:
        """The events appended (by anyone) since this reader's last call, in log order."""

    @abstractmethod
    def reset(self) -> None:
        """Start an empty log (a fresh service)."""

    def append_and_read(self, events: Sequence[SessionEvent]) -> list[SessionEvent]:
        """``append`` then ``read_new`` (a shared log does both in one round trip)."""
        self.append(events)
        return self.read_new()

    def describe(self) -> dict:
        return {}

    def forget(self, users: Sequence[int]) -> int:
        """Remove the events of ``users`` from the log (erasure); returns how many went."""
        raise NotImplementedError(f"{type(self).__name__} cannot forget users yet")


class LocalEventLog(EventLog):
    """The log of one process."""

    def __init__(self) -> None:
        self._pending: list[SessionEvent] = []
        self._lock = threading.Lock()

    def append(self, events: Sequence[SessionEvent]) -> None:
        with self._lock:
            self._pending.extend(events)

    def read_new(self) -> list[SessionEvent]:
        with self._lock:
            out, self._pending = self._pending, []
        return out

    def reset(self) -> None:
        self.read_new()

    def describe(self) -> dict:
        return {"state": "in-process"}

    def forget(self, users: Sequence[int]) -> int:
        gone = set(int(u) for u in users)
        with self._lock:
            kept = [e for e in self._pending if e.user not in gone]
            removed, self._pending = len(self._pending) - len(kept), kept
        return removed


class SharedStateService(RecommenderService):
    """``inner``'s state kept equal to the fold of ``log`` (see the module notes)."""

    def __init__(self, inner: RecommenderService, log: EventLog) -> None:
        self.inner, self.log = inner, log
        self.applied = 0  # events of the log folded into this process's state
        self._lock = threading.Lock()

    def sync(self, append: Sequence[SessionEvent] = ()) -> int:
        """Fold the log's new events into the state, after appending ``append`` (with the read,
        in one round trip where the log can); returns how many there were."""
        with self._lock:
            new = self.log.append_and_read(append) if append else self.log.read_new()
            if new:
                self.inner.ingest(new)
                self.applied += len(new)
        return len(new)

    def recommend(
        self, user: int, now: int, k: int, kinds: Sequence[str] = ITEM_KINDS
    ) -> Recommendation:
        self.sync()
        return self.inner.recommend(user, now, k, kinds)

    def ingest(self, events: Sequence[SessionEvent]) -> int:
        self.sync(append=events)
        return len(events)

    def health(self, now: int) -> dict:
        return {**self.inner.health(now), **self.log.describe(), "events_applied": self.applied}
