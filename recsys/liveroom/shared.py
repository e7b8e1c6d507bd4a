"""Live rooms shared by several service workers: every worker folds the same ordered batches.

A room's state (windows, question clusters, suggestions) is a deterministic fold of the
batches of posted events, in order, as ``LiveRooms`` takes them. So what workers must share is
the order of the batches, not the state: ``SharedLiveRooms`` appends each posted batch (its
records, as JSON) to one ordered list and, before it answers anything, folds in every batch
the list has gained since this process last looked, its own included. Each worker then shows
exactly what one process fed the same batches would, and a batch is acknowledged (with the
fold's own report of it) only once the list holds it.

Backends: ``LocalBatches`` (one process; the same answers as a plain ``LiveRooms``) and
``recsys.serving.redis_log.RedisBatches`` (``recsys-serve workers=N state.backend=redis``).
"""

from __future__ import annotations

import json
from typing import Protocol

from recsys.liveroom.rooms import LiveRooms


class Batches(Protocol):
    def append(self, data: bytes) -> int: ...

    def read_new(self) -> tuple[int, list[bytes]]: ...

    def rewrite(self, fn) -> int: ...


class LocalBatches:
    """The ordered list in this process; readers made over one ``items`` list share it."""

    def __init__(self, items: list[bytes] | None = None) -> None:
        self.items: list[bytes] = [] if items is None else items
        self.cursor = 0

    def append(self, data: bytes) -> int:
        self.items.append(data)
        return len(self.items) - 1

    def read_new(self) -> tuple[int, list[bytes]]:
        first, self.cursor = self.cursor, len(self.items)
        return first, self.items[first:]

    def rewrite(self, fn) -> int:
        """Each batch replaced by ``fn(batch)`` in place; returns the batches changed."""
        changed = 0
        for i, data in enumerate(self.items):
            new = fn(data)
            if new != data:
                self.items[i], changed = new, changed + 1
        return changed

    def reset(self) -> None:
        """Empty the list (a fresh start)."""
        self.items.clear()
        self.cursor = 0

    def length(self) -> int:
        return len(self.items)


class SharedLiveRooms:
    """A ``LiveRooms`` kept equal to the fold of every batch in ``batches``."""

    def __init__(self, inner: LiveRooms, batches: Batches) -> None:
        self.inner, self.batches = inner, batches

    def sync(self, until: int = -1) -> dict | None:
        """Fold in the batches not folded yet; the report of batch ``until`` if among them."""
        first, new = self.batches.read_new()
        mine = None
        for i, data in enumerate(new, start=first):
            report = self.inner.ingest_records(json.loads(data))
            if i == until:
                mine = report
        return mine

    def ingest_records(self, records: list[dict]) -> dict:
        position = self.batches.append(json.dumps(records, ensure_ascii=False).encode())
        report = self.sync(until=position)
        if report is None:
            raise RuntimeError(f"live rooms: batch {position} was not folded in after posting")
        return report

    def forget(self, users) -> dict[str, int]:
        """``users`` out of every batch of the list (positions stay, so every worker's cursor
        holds) and out of this worker's rooms; a worker that folded them before holds them
        until it is told too, or restarted. Returns the records and questions dropped."""
        gone, dropped = {int(u) for u in users}, 0

        def without(data: bytes) -> bytes:
            nonlocal dropped
            records = json.loads(data)
            kept = [r for r in records if not _of(r, gone)]
            dropped += len(records) - len(kept)
            changed = len(kept) < len(records)
            return json.dumps(kept, ensure_ascii=False).encode() if changed else data

        self.sync()
        self.batches.rewrite(without)
        return {"live_records": dropped, **self.inner.forget(gone)}

    @property
    def version(self) -> int:
        self.sync()
        return self.inner.version

    def live(self) -> list[dict]:
        self.sync()
        return self.inner.live()

    def snapshot(self, room: int) -> dict:
        self.sync()
        return self.inner.snapshot(room)


def _of(record, users: set[int]) -> bool:
    """Whether a posted record is an event of one of ``users`` (ids as posted: int or text)."""
    try:
        return isinstance(record, dict) and int(record.get("user_id")) in users
    except (TypeError, ValueError):
        return False
