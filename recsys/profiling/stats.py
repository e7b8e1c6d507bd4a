"""Mergeable sufficient statistics of user behaviour: the state behind incremental profiles.

Profiles are never updated in place. Each batch of events becomes a ``ProfileStats`` (sums,
counts, decayed sums, histograms, first/last times), two stats merge into the stats of the
union of their events, and features are derived from the merged stats afterwards. So
``merge(stats(a), stats(b))`` gives the same features as ``stats(a + b)``: exactly for counts
and extremes, to rounding (1e-15 relative) for decayed sums.

How a column merges follows from its name:

* ``d_*``      decayed sum ``sum(w * 2 ** -((ref_ts - ts) / half_life))``, rescaled to the later
               reference time before adding;
* ``first_*``  minimum, ``last_*`` maximum (int64 Unix seconds, -1 = never);
* anything else a plain sum (float64, so integer counts stay exact up to 2 ** 53).

Two tables: ``users`` (index ``user_id``, one row per user) and ``pairs`` (one row per
(user, streamer) the user met, with the streamer's category code as part of the key).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

PAIR_KEYS = ["user_id", "streamer_id", "category"]


def column_kind(name: str) -> str:
    if name.startswith("d_"):
        return "decayed"
    if name.startswith("first_"):
        return "min"
    if name.startswith("last_"):
        return "max"
    return "sum"


def decay_factor(from_ts: int, to_ts: int, half_life_s: float) -> float:
    """Multiplier that moves a decayed sum's reference time from ``from_ts`` to ``to_ts``."""
    return float(np.exp2(-(to_ts - from_ts) / half_life_s))


@dataclass(frozen=True)
class ProfileStats:
    users: pd.DataFrame  # index user_id (sorted, unique); columns named by kind
    pairs: pd.DataFrame  # PAIR_KEYS + sum/decayed/max columns; sorted by (user_id, streamer_id)
    ref_ts: int  # reference time of every d_* column (the latest event seen)
    half_life_s: float
    categories: tuple[str, ...]  # category code i of ``pairs`` and ``*_<category>`` columns
    topics: tuple[str, ...]

    @property
    def n_users(self) -> int:
        return len(self.users)

    def rebased(self, ref_ts: int) -> ProfileStats:
        """The same statistics with decayed sums referred to a later time ``ref_ts``."""
        if ref_ts < self.ref_ts:
            raise ValueError(f"cannot rebase stats at {self.ref_ts} to earlier time {ref_ts}")
        if ref_ts == self.ref_ts:
            return self
        factor = decay_factor(self.ref_ts, ref_ts, self.half_life_s)
        return replace(
            self,
            users=_scale_decayed(self.users, factor),
            pairs=_scale_decayed(self.pairs, factor),
            ref_ts=ref_ts,
        )

    def merge(self, other: ProfileStats) -> ProfileStats:
        """Statistics of the union of both event sets (the events must not overlap)."""
        return merge_all([self, other])

    def _check_compatible(self, other: ProfileStats) -> None:
        for name in ("half_life_s", "categories", "topics"):
            if getattr(self, name) != getattr(other, name):
                raise ValueError(
                    f"cannot merge profile stats with different {name}: "
                    f"{getattr(self, name)!r} vs {getattr(other, name)!r}"
                )
        for table in ("users", "pairs"):
            left, right = list(getattr(self, table).columns), list(getattr(other, table).columns)
            if left != right:
                raise ValueError(f"cannot merge profile stats: {table} columns differ")


def merge_all(parts: list[ProfileStats]) -> ProfileStats:
    """Statistics of the union of all parts' events: one sort, however many parts, so
    merging k batches at once is cheaper than k - 1 pairwise merges."""
    if not parts:
        raise ValueError("merge_all needs at least one ProfileStats")
    for other in parts[1:]:
        parts[0]._check_compatible(other)
    ref = max(p.ref_ts for p in parts)
    rebased = [p.rebased(ref) for p in parts]
    users = _combine([p.users for p in rebased], keys=None)
    pairs = _combine([p.pairs for p in rebased], keys=PAIR_KEYS)
    return replace(rebased[0], users=users, pairs=pairs)


def _scale_decayed(frame: pd.DataFrame, factor: float) -> pd.DataFrame:
    cols = [c for c in frame.columns if column_kind(c) == "decayed"]
    out = frame.copy()
    out[cols] = frame[cols].to_numpy() * factor
    return out


_REDUCE = {"sum": np.add, "decayed": np.add, "min": np.minimum, "max": np.maximum}


def _packed_rank(columns: list[np.ndarray]) -> np.ndarray:
    """One int64 per row that sorts like the rows' key tuples (lexicographic)."""
    packed = np.zeros(len(columns[0]), dtype=np.int64)
    for col in columns:
        codes, uniques = pd.factorize(col, sort=True)
        packed = packed * max(len(uniques), 1) + codes
    return packed


def _combine(frames: list[pd.DataFrame], keys: list[str] | None) -> pd.DataFrame:
    """Group-wise sum / min / max of stat tables, keyed by index or by ``keys``.

    One stable sort of the stacked keys and a ``reduceat`` per column, so merging costs a
    sort of the rows, whatever the number of columns."""
    a = frames[0]
    key_cols = [np.concatenate([f.index.to_numpy() for f in frames])] if keys is None else []
    key_cols += [np.concatenate([f[k].to_numpy() for f in frames]) for k in keys or []]
    packed = _packed_rank(key_cols)
    order = np.argsort(packed, kind="stable")
    starts = np.flatnonzero(np.diff(packed[order], prepend=-1) != 0)
    first = order[starts]  # a row of each group, for its keys
    out = {}
    for c in a.columns:
        column = np.concatenate([f[c].to_numpy() for f in frames])
        if keys is not None and c in keys:
            out[c] = column[first]
        else:
            reduce = _REDUCE[column_kind(c)].reduceat
            out[c] = reduce(column[order], starts) if len(starts) else column[:0]
    index = pd.Index(key_cols[0][first], name=a.index.name) if keys is None else None
    return pd.DataFrame(out, index=index)
