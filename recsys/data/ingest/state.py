"""What ingestion remembers between chunks and between runs on the same world folder.

Checks that span rows run chunk by chunk, so the rows of earlier chunks (and earlier runs,
when more days are appended) are summarised, not kept:

* event ids seen so far as sorted disjoint ranges: logs number events consecutively, so a
  billion ids usually cost a few ranges, and a repeat is found by binary search;
* the latest time seen in each live session, so that time going backwards within a session is
  caught across chunk boundaries (events are checked in file order);
* the next id to give events whose table has none.

The state is stored beside the world (``ingest_state.npz``) and read back on append.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.validation.checks import Finding, Parsed, finding

STATE_FILE = "ingest_state.npz"
FEW_RANGES = 8


@dataclass
class IdRanges:
    starts: np.ndarray  # (n,) int64, ascending
    ends: np.ndarray  # (n,) int64, inclusive; ranges are disjoint and not adjacent

    @classmethod
    def empty(cls) -> IdRanges:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    def contains(self, values: np.ndarray) -> np.ndarray:
        if len(self.starts) <= FEW_RANGES:
            # A few comparisons over the chunk beat a binary search per value.
            inside = np.zeros(len(values), dtype=bool)
            for start, end in zip(self.starts.tolist(), self.ends.tolist(), strict=True):
                inside |= (values >= start) & (values <= end)
            return inside
        pos = np.searchsorted(self.starts, values, side="right") - 1
        inside = pos >= 0
        inside[inside] = values[inside] <= self.ends[pos[inside]]
        return inside

    def add(self, values: np.ndarray) -> None:
        """Merge ``values`` in: sort, cut into consecutive runs, merge overlapping ranges."""
        if not len(values):
            return
        ids = np.asarray(values, dtype=np.int64)
        if len(ids) > 1 and not np.all(ids[1:] > ids[:-1]):
            # Sort + neighbour compare: np.unique is several times slower on millions of ids.
            ids = np.sort(ids)
            ids = ids[np.r_[True, ids[1:] != ids[:-1]]]
        cut = np.flatnonzero(np.diff(ids) != 1) + 1
        starts = np.concatenate([self.starts, ids[np.r_[0, cut]]])
        ends = np.concatenate([self.ends, ids[np.r_[cut - 1, len(ids) - 1]]])
        order = np.argsort(starts, kind="stable")
        starts, ends = starts[order], ends[order]
        reach = np.maximum.accumulate(ends)
        new = np.r_[True, starts[1:] > reach[:-1] + 1]  # a gap before it: a range begins
        self.starts = starts[new]
        self.ends = np.maximum.reduceat(ends, np.flatnonzero(new))


@dataclass
class EventState:
    ids: IdRanges
    sessions: np.ndarray  # (m,) int64 sorted session ids seen
    last_ts: np.ndarray  # (m,) int64 latest ts seen in each
    next_id: int = 0  # first id given to events of a table without ids

    @classmethod
    def empty(cls) -> EventState:
        none = np.zeros(0, dtype=np.int64)
        return cls(IdRanges.empty(), none, none.copy())

    @classmethod
    def load(cls, folder: Path) -> EventState:
        path = folder / STATE_FILE
        if not path.is_file():
            return cls.empty()
        z = np.load(path)
        ids = IdRanges(z["id_starts"], z["id_ends"])
        return cls(ids, z["sessions"], z["last_ts"], int(z["next_id"]))

    def save(self, folder: Path) -> None:
        np.savez(folder / STATE_FILE, id_starts=self.ids.starts, id_ends=self.ids.ends,
                 sessions=self.sessions, last_ts=self.last_ts,
                 next_id=np.int64(self.next_id))  # fmt: skip

    def findings(self, parsed: Parsed, flagged: np.ndarray) -> list[Finding]:
        """Rows repeating an event id of an earlier chunk, or earlier than their session's
        latest event of an earlier chunk (rows already flagged are left out of the second)."""
        event_id, session, ts = parsed["event_id"], parsed["session_id"], parsed["ts"]
        seen = event_id.present & self.ids.contains(event_id.values)
        out = [finding("event_id", "duplicate event_id", seen, event_id.values, " (earlier chunk)")]
        latest, known = self._latest(session.values)
        back = ~flagged & ~seen & known & session.present & ts.present & (ts.values < latest)
        out.append(finding("ts", "decreases within session", back, "(", ts.values, " after ",
                           latest, " in session ", session.values, ")"))  # fmt: skip
        return out

    def _latest(self, sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latest ts of each session in earlier chunks, and whether there was one."""
        if not len(self.sessions):
            return np.zeros(len(sessions), dtype=np.int64), np.zeros(len(sessions), dtype=bool)
        low, span = int(self.sessions[0]), int(self.sessions[-1]) - int(self.sessions[0]) + 1
        if span <= 4 * len(self.sessions) + 1024:
            # Dense session ids: one array read per row instead of a binary search.
            table = np.full(span + 1, len(self.sessions), dtype=np.int64)
            table[self.sessions - low] = np.arange(len(self.sessions))
            at = sessions - low
            pos = table[np.where((at >= 0) & (at < span), at, span)]
            known = pos < len(self.sessions)
            return np.r_[self.last_ts, 0][pos], known
        pos = np.minimum(np.searchsorted(self.sessions, sessions), len(self.sessions) - 1)
        return self.last_ts[pos], self.sessions[pos] == sessions

    def update(self, accepted: pd.DataFrame) -> None:
        """Fold a chunk's accepted events in."""
        self.ids.add(accepted["event_id"].to_numpy(np.int64))
        if len(accepted):
            self.next_id = max(self.next_id, int(accepted["event_id"].max()) + 1)
        with_session = accepted[accepted["session_id"].notna()]
        latest = with_session.groupby("session_id")["ts"].max()
        sessions = np.concatenate([self.sessions, latest.index.to_numpy(np.int64)])
        last = np.concatenate([self.last_ts, latest.to_numpy(np.int64)])
        merged = pd.Series(last).groupby(sessions).max()
        self.sessions, self.last_ts = merged.index.to_numpy(np.int64), merged.to_numpy(np.int64)
