"""``RedisEventLog``: the shared event log of several service workers in one Redis list.

The only module that imports ``redis`` (redis-py). One list element per posted batch
(``recsys.serving.state.encode_batch``), appended with ``RPUSH`` (atomic: batches from
different workers get one total order), read from the reader's cursor with ``LRANGE``, one
round trip per request. An append returns once Redis holds the batch; how long Redis keeps
it across its own restarts is Redis's persistence setting (``appendonly``).

``RedisBatches`` is the list itself (opaque batches), which the live rooms and the consent
decisions of several workers share too (``recsys.liveroom.shared``,
``recsys.privacy.shared_consent``, under their own keys). A list can carry ``riders``: lists
read in the same round trip as it (one pipeline), their new batches kept for the rider's next
read on the same thread. ``recsys-serve`` makes the event log ride on the consent list, which
every request reads first, so consent and events together still cost one round trip. A list
is never trimmed while the service runs: a worker started later must replay it from the
start. The event log grows by ~60 bytes per event (about 100 MB per 1.7M events).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import redis

from recsys.ranking.events import SessionEvent
from recsys.serving.state import EventLog, decode_batch, encode_batch


class RedisBatches:
    """An append-only list of opaque batches under ``key``, read on from this reader's cursor:
    the one total order that every process reading the key applies."""

    def __init__(self, *, url: str, key: str, timeout_s: float = 2.0) -> None:
        self.url, self.key = url, key
        # Connections are made on first use and per process (redis-py resets its pool in a
        # forked child), so a service built before forking into workers is safe.
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self.cursor = 0  # batches of the list this reader has read
        self.riders: list[RedisBatches] = []  # lists read in the same round trip as this one
        self._ahead = threading.local()  # (pid, cursor, batches) a leader read for this thread

    def carry(self, rider: RedisBatches) -> None:
        """Read ``rider`` whenever this list is read, in the same round trip."""
        if rider.url != self.url:
            raise ValueError(f"RedisBatches: {rider.key} is on {rider.url}, not {self.url}")
        self.riders.append(rider)

    def append(self, data: bytes) -> int:
        """Add a batch at the end; returns its position in the list."""
        self._ahead.read = None  # a read from before this append must not hide it
        return int(self._client.rpush(self.key, data)) - 1

    def append_and_read(self, data: bytes) -> tuple[int, list[bytes]]:
        """``append`` then ``read_new`` in one round trip (riders are not read)."""
        self._ahead.read = None
        first = self.cursor
        pipe = self._client.pipeline(transaction=False)
        pipe.rpush(self.key, data)
        pipe.lrange(self.key, first, -1)
        _, batches = pipe.execute()
        self.cursor = first + len(batches)
        return first, batches

    def read_new(self) -> tuple[int, list[bytes]]:
        """(position of the first, the batches appended since the last read)."""
        first, ahead = self.cursor, getattr(self._ahead, "read", None)
        self._ahead.read = None
        if ahead is not None and ahead[:2] == (os.getpid(), first):
            batches = ahead[2]  # read with a leader's list, on this thread, since our last read
        elif self.riders:
            batches = self._read_with_riders(first)
        else:
            batches = self._client.lrange(self.key, first, -1)
        self.cursor = first + len(batches)
        return first, batches

    def _read_with_riders(self, first: int) -> list[bytes]:
        """This list's new batches; each rider's wait for its next read on this thread and in
        this process (a rider read elsewhere in between moved its cursor: they are dropped)."""
        at = [rider.cursor for rider in self.riders]
        pipe = self._client.pipeline(transaction=False)
        pipe.lrange(self.key, first, -1)
        for rider, cursor in zip(self.riders, at, strict=True):
            pipe.lrange(rider.key, cursor, -1)
        batches, *theirs = pipe.execute()
        for rider, cursor, rows in zip(self.riders, at, theirs, strict=True):
            rider._ahead.read = (os.getpid(), cursor, rows)
        return batches

    def reset(self) -> None:
        self._ahead.read = None
        self._client.delete(self.key)
        self.cursor = 0

    def length(self) -> int:
        return int(self._client.llen(self.key))

    def rewrite(self, fn) -> int:
        """Replace each batch ``data`` by ``fn(data)`` where that differs, in place (``LSET``:
        positions, hence every reader's cursor, stay valid); returns the batches changed."""
        changed = 0
        for i, data in enumerate(self._client.lrange(self.key, 0, -1)):
            new = fn(data)
            if new != data:
                self._client.lset(self.key, i, new)
                changed += 1
        return changed


class RedisEventLog(EventLog):
    def __init__(self, *, url: str, key: str = "recsys:serve:events", timeout_s: float = 2.0):
        self._batches = RedisBatches(url=url, key=key, timeout_s=timeout_s)
        self.url, self.key = url, key

    def append(self, events: Sequence[SessionEvent]) -> None:
        if events:
            self._batches.append(encode_batch(events))

    def read_new(self) -> list[SessionEvent]:
        _, batches = self._batches.read_new()
        return [e for data in batches for e in decode_batch(data)]

    def append_and_read(self, events: Sequence[SessionEvent]) -> list[SessionEvent]:
        if not events:
            return self.read_new()
        if self._batches.riders:  # a leader's read also fills its riders: keep it separate
            return super().append_and_read(events)
        _, batches = self._batches.append_and_read(encode_batch(events))
        return [e for data in batches for e in decode_batch(data)]

    def reset(self) -> None:
        self._batches.reset()

    def length(self) -> int:
        """Batches in the log."""
        return self._batches.length()

    @property
    def batches(self) -> RedisBatches:
        """The list under the log (another list may carry it: ``RedisBatches.carry``)."""
        return self._batches

    def forget(self, users: Sequence[int]) -> int:
        """The events of ``users`` out of every batch (a batch may become empty, never
        removed); a batch rewritten while a worker posts is still whole: each is one ``LSET``."""
        gone, removed = set(int(u) for u in users), 0

        def without(data: bytes) -> bytes:
            nonlocal removed
            events = decode_batch(data)
            kept = [e for e in events if e.user not in gone]
            removed += len(events) - len(kept)
            return encode_batch(kept) if len(kept) < len(events) else data

        self._batches.rewrite(without)
        return removed

    def describe(self) -> dict:
        return {"state": "redis", "state_key": self.key, "log_batches_read": self._batches.cursor}
