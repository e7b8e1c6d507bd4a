"""Consent shared by several service workers: every worker folds the same ordered decisions.

A consent book is a fold of decisions in order (``recsys.privacy.consent``: the latest ``ts``
holds, a tie goes to the later decision). So what the worker processes of one service must
share is that order, as for their event log and live rooms: ``SharedConsentBook`` appends every
decision it takes to one ordered list of batches and, before it answers any question, folds in
the batches the list has gained since this process last looked, its own included. A decision
posted to one worker is therefore seen by the very next request on any worker, and a worker
started later (or forked to replace one that died) replays the list.

The list starts with the world's ``consent.parquet`` (``share_consent``), so it is the whole
book. Erasure rewrites each batch without the forgotten viewers' decisions (positions stay, so
every reader's cursor holds) and then appends a reload marker that names nobody: each worker
that reads it rebuilds its book from the rewritten list, so no worker keeps what was forgotten.

The list is any ``DecisionBatches``: ``recsys.serving.redis_log.RedisBatches`` across
processes, or a list in one process.
"""

from __future__ import annotations

import json
import threading
from typing import Protocol

import numpy as np
import pandas as pd

from recsys.privacy.consent import ALL_CHANNELS, ConsentBook, Decision

RELOAD = b'{"reload":"forget"}'  # every reader rebuilds its book from the whole list
SEED_BATCH = 10_000  # decisions per batch when the table seeds the list


class DecisionBatches(Protocol):
    cursor: int

    def append(self, data: bytes) -> int: ...

    def read_new(self) -> tuple[int, list[bytes]]: ...

    def rewrite(self, fn) -> int: ...

    def reset(self) -> None: ...

    def length(self) -> int: ...


def encode_decisions(decisions: list[Decision]) -> bytes:
    """Compact JSON rows ``[user_id, purpose, channel, granted, ts]``."""
    rows = [[d.user_id, d.purpose, d.channel, d.granted, d.ts] for d in decisions]
    return json.dumps(rows, separators=(",", ":")).encode()


def decode_decisions(data: bytes) -> list[Decision]:
    return [Decision(int(u), p, bool(g), int(ts), c) for u, p, c, g, ts in json.loads(data)]


class SharedConsentBook(ConsentBook):
    """A ``ConsentBook`` kept equal to the fold of every batch of ``batches``."""

    def __init__(self, batches: DecisionBatches, *, default: bool = True) -> None:
        super().__init__(default=default)
        self.batches = batches
        self.reloads = 0  # rebuilds from the whole list (one per erasure seen)
        self._sync_lock = threading.RLock()

    def sync(self) -> int:
        """Fold in the decisions appended since the last look; returns how many there were."""
        with self._sync_lock:
            _, new = self.batches.read_new()
            if RELOAD in new:
                return self._rebuild()
            decisions = [d for data in new for d in decode_decisions(data)]
            for d in decisions:
                super().decide(d)
            return len(decisions)

    def _rebuild(self) -> int:
        """The book again from the list's first batch (after an erasure rewrote the list)."""
        self.batches.cursor = 0
        _, batches = self.batches.read_new()
        decisions = [d for data in batches if data != RELOAD for d in decode_decisions(data)]
        fresh = ConsentBook(decisions, default=self.default)
        with self._lock:
            self._latest, self._log = fresh._latest, fresh._log
        self.reloads += 1
        return len(decisions)

    def describe(self) -> dict:
        """Every worker reports the same list: its key, the batches read, the rebuilds."""
        return {"consent": "shared", "consent_key": getattr(self.batches, "key", None),
                "consent_batches_read": self.batches.cursor, "consent_reloads": self.reloads,
                "consent_decisions": len(self._log)}  # fmt: skip

    def decide(self, decision: Decision) -> None:
        """Append the decision to the shared list; this and every other worker then fold it."""
        self.batches.append(encode_decisions([decision]))
        self.sync()

    def allowed(self, users, purpose: str, channel: str = ALL_CHANNELS) -> np.ndarray:
        self.sync()
        return super().allowed(users, purpose, channel)

    def withheld(self, purpose: str, channel: str = ALL_CHANNELS) -> np.ndarray:
        self.sync()
        return super().withheld(purpose, channel)

    def table(self) -> pd.DataFrame:
        self.sync()
        return super().table()

    def forget(self, users) -> int:
        """Drop every decision of ``users`` from the shared list and, through the reload marker,
        from every worker's book; returns how many decisions left the list."""
        gone, removed = {int(u) for u in users}, 0

        def without(data: bytes) -> bytes:
            nonlocal removed
            if data == RELOAD:
                return data
            decisions = decode_decisions(data)
            kept = [d for d in decisions if d.user_id not in gone]
            removed += len(decisions) - len(kept)
            return encode_decisions(kept) if len(kept) < len(decisions) else data

        with self._sync_lock:
            self.batches.rewrite(without)
            if removed:  # no worker holds a decision of theirs otherwise: nothing to rebuild
                self.batches.append(RELOAD)
            self.sync()
        return removed


def share_consent(book: ConsentBook, batches: DecisionBatches, *, fresh: bool) -> SharedConsentBook:
    """``book`` (the world's decisions) as a book shared through ``batches``. ``fresh``: the list
    starts again from ``book``; otherwise a list that already holds decisions is kept as the
    whole book (it was seeded from the table when the service first started) and only an empty
    one is seeded. The returned book has read the list, so workers forked from this process
    replay only what is appended after."""
    if fresh:
        batches.reset()
    if fresh or batches.length() == 0:
        rows = [
            Decision(int(r.user_id), str(r.purpose), bool(r.granted), int(r.ts), str(r.channel))
            for r in book.table().itertuples()
        ]
        for i in range(0, len(rows), SEED_BATCH):
            batches.append(encode_decisions(rows[i : i + SEED_BATCH]))
    shared = SharedConsentBook(batches, default=book.default)
    shared.sync()
    return shared
