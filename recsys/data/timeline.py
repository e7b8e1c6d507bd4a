"""Point-in-time look-ups over keyed, timed records, vectorised over many queries.

Two questions come up whenever a feature must be computed "as of time t" from a log:

* how many events (or how much of some value) did key k collect in a time window ending
  before t (``KeyedTimeline.sum_between`` / ``sum_before``), and
* which interval of key k covers t (``KeyedIntervals.covering``), e.g. the showcase slot of a
  product in a room, or a coupon drop.

Both sort the records once by ``(key, time)`` and answer each query with one ``searchsorted``
over a combined int64 key: the key (or, where keys are too large for that, its rank among the
distinct keys) times a span larger than any time offset, plus the time offset. Keys are
arbitrary int64 values (ids or pair codes from
``pair_codes``); a query key that never occurs simply finds nothing. Negative keys mean "no
key" (an id unknown to the caller's index): such records are ignored, such queries find
nothing. Windows are half-open, ``[lo, hi)``, so "before t" never includes an event stamped
exactly at t.
"""

from __future__ import annotations

import numpy as np

SHORT_RANGE_PER_KEY = 8  # ``distinct`` marks a table when the keys span at most this many each
# Below this many keys of a wide range (a request's (session, product) pairs), sorting them to
# search each once costs more than searching them all: measured 31 us to sort 754 pair codes
# against 23 us saved.
SORT_TO_DEDUPLICATE = 4096


def search(haystack: np.ndarray, needles: np.ndarray, side: str = "left") -> np.ndarray:
    """``np.searchsorted(haystack, needles, side)``; needles that are all one value (one
    request's viewer, one time) are searched once. The same positions, exactly."""
    needles = np.asarray(needles)
    if needles.size > 1 and _one_value(needles):
        one = np.searchsorted(haystack, needles.flat[0], side=side)
        return np.full(needles.shape, one, dtype=np.intp)
    return np.searchsorted(haystack, needles, side=side)


def common_value(values: np.ndarray):
    """The one int all ``values`` share (one request's time), else ``values`` unchanged:
    look-ups given one time skip per-query time arithmetic."""
    values = np.asarray(values)
    return int(values.flat[0]) if values.size and _one_value(values) else values


def _one_value(values: np.ndarray) -> bool:
    return bool(values.flat[0] == values.flat[-1] and (values == values.flat[0]).all())


def distinct(key: np.ndarray, *, sort: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
    """``np.unique(key, return_inverse=True)`` of a 1-d int64 array, exactly. Keys within a
    short range (one viewer's pairs with a few thousand streamers, the sessions live now) are
    marked in a table over the range instead of sorted; keys already strictly increasing (a
    request's candidates in id order) are their own distinct keys. ``sort=False``: None
    where only a sort would find them (keys of a wide range)."""
    if len(key) < 2:
        return np.unique(key, return_inverse=True)
    if bool((key[1:] > key[:-1]).all()):
        return key.copy(), np.arange(len(key))
    lo, hi = int(key.min()), int(key.max())
    if hi - lo > SHORT_RANGE_PER_KEY * len(key):
        return np.unique(key, return_inverse=True) if sort else None
    offset = key - lo
    present = np.zeros(hi - lo + 1, dtype=bool)
    present[offset] = True
    rank = np.cumsum(present) - 1  # (range,) the rank of each present value
    return np.flatnonzero(present) + lo, rank[offset]


def pair_codes(a: np.ndarray, b: np.ndarray, n_b: int) -> np.ndarray:
    """One int64 code per (a, b) pair of dense codes, ``b`` in [0, n_b); -1 where either is -1."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    return np.where((a >= 0) & (b >= 0), a * n_b + b, -1)


class _KeyedOrder:
    """Records sorted by (key, time) with combined search keys.

    A combined key is a key times a span larger than any time offset, plus the offset. Where
    the largest key times the span fits in int64 (ids and pair codes over days of logs), the
    key itself is combined: one search per query answers it. Otherwise the key's rank among
    the distinct keys is, which first takes a search of the distinct keys."""

    def __init__(self, key: np.ndarray, ts: np.ndarray) -> None:
        key, ts = np.asarray(key, dtype=np.int64), np.asarray(ts, dtype=np.int64)
        if key.shape != ts.shape:
            raise ValueError(f"keys and times differ in length: {len(key)} vs {len(ts)}")
        order = np.lexsort((ts, key))
        self.order = order[key[order] >= 0]
        self.sorted_keys = key[self.order]
        kept = ts[self.order]
        self.t0 = int(kept.min()) if len(kept) else 0
        self.span = (int(kept.max()) - self.t0 + 2) if len(kept) else 2
        self.top = int(self.sorted_keys[-1]) if len(kept) else -1
        self.direct = (self.top + 1) * self.span < 2**62
        self.keys = None if self.direct else np.unique(self.sorted_keys)
        if not self.direct and len(self.keys) * self.span >= 2**62:
            raise ValueError("too many distinct keys for this time span to combine in int64")
        code = self.sorted_keys if self.direct else np.searchsorted(self.keys, self.sorted_keys)
        self.combined = self._combine(code, kept)

    def _combine(self, code: np.ndarray, ts) -> np.ndarray:
        if np.ndim(ts) == 0:  # one time for every query (a request's): one offset, in Python
            return code * self.span + min(max(int(ts) - self.t0, 0), self.span - 1)
        # minimum/maximum, not clip: the same integers without clip's cost per call.
        offset = np.minimum(np.maximum(np.asarray(ts, dtype=np.int64) - self.t0, 0), self.span - 1)
        return code * self.span + offset

    def codes(self, key: np.ndarray) -> np.ndarray:
        """The combined code of each query key; -1 (it finds nothing) for a key that cannot
        occur. Ranks are searched only where the keys themselves do not fit."""
        key = np.asarray(key, dtype=np.int64)
        if self.direct:
            if len(key) and (key.min() < 0 or key.max() > self.top):
                return np.where((key < 0) | (key > self.top), -1, key)
            return key
        rank = search(self.keys, key)
        known = (rank < len(self.keys)) & (key >= 0)
        known[known] = self.keys[rank[known]] == key[known]
        return np.where(known, rank, -1)

    def position(self, key: np.ndarray, ts: np.ndarray, side: str) -> np.ndarray:
        """Index into the sorted records of the first record of ``key`` at time >= ts ('left')
        or > ts ('right'); unknown keys give a position whose window is empty."""
        return self.positions(key, (ts,), side)[0]

    def positions(self, key: np.ndarray, times, side: str) -> list[np.ndarray]:
        """``position`` of the same keys at each of several times, coding the keys once. A
        key that cannot occur is coded -1: its combined keys fall below every record's, so
        each of its positions is 0."""
        code = self.codes(key)
        return [search(self.combined, self._combine(code, t), side) for t in times]


def _window(lo, hi, shape: tuple[int, ...]) -> tuple:
    """(lo, hi) as two ints when every query has the same window, else as arrays of ``shape``."""
    if np.ndim(lo) == 0 and np.ndim(hi) == 0:
        return int(lo), int(hi)
    lo = np.broadcast_to(np.asarray(lo, dtype=np.int64), shape)
    hi = np.broadcast_to(np.asarray(hi, dtype=np.int64), shape)
    if lo.size and _one_value(lo) and _one_value(hi):
        return int(lo.flat[0]), int(hi.flat[0])
    return lo, hi


class KeyedTimeline:
    """Timed records of int64 keys carrying values (default: 1 per record, i.e. counts)."""

    def __init__(self, key: np.ndarray, ts: np.ndarray, values: np.ndarray | None = None) -> None:
        self._index = _KeyedOrder(key, ts)
        n = len(np.asarray(key))
        values = np.ones(n) if values is None else np.asarray(values, dtype=np.float64)
        if len(values) != n:
            raise ValueError(f"values have {len(values)} rows for {n} records")
        cum = np.cumsum(values[self._index.order], axis=0)
        zero = np.zeros((1, *values.shape[1:]))
        self._cum = np.concatenate([zero, cum])  # _cum[i] = sum of the first i sorted records

    def __len__(self) -> int:
        return len(self._index.order)

    def sum_between(self, key: np.ndarray, lo, hi) -> np.ndarray:
        """Sum of the values of ``key``'s records with ``lo <= ts < hi`` (per query; ``lo``
        and ``hi`` are arrays like ``key`` or one value each for all)."""
        key = np.asarray(key, dtype=np.int64)
        lo, hi = _window(lo, hi, key.shape)
        if np.ndim(lo) == 0 and key.ndim == 1 and len(key) > 1:  # one window: each key once
            if _one_value(key):  # e.g. the request's viewer
                return np.repeat(self._sums(key[:1], lo, hi), len(key), axis=0)
            found = distinct(key, sort=len(key) > SORT_TO_DEDUPLICATE)
            if found is not None and len(found[0]) < len(key):
                return self._sums(found[0], lo, hi)[found[1]]
        return self._sums(key, lo, hi)

    def _sums(self, key: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        start, stop = self._index.positions(key, (lo, hi), "left")
        stop = np.maximum(stop, start)
        return self._cum[stop] - self._cum[start]

    def sum_before(self, key: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Sum of the values of ``key``'s records strictly before ``ts``."""
        return self.sum_between(key, np.iinfo(np.int64).min // 4, ts)


class KeyedIntervals:
    """Non-overlapping ``[start, end]`` intervals per int64 key (closed, as live windows)."""

    def __init__(self, key: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
        start, end = np.asarray(start, dtype=np.int64), np.asarray(end, dtype=np.int64)
        if np.any(end < start):
            bad = int(np.flatnonzero(end < start)[0])
            raise ValueError(f"interval {bad}: end {end[bad]} < start {start[bad]}")
        self._index = _KeyedOrder(key, start)
        self._key = self._index.sorted_keys
        self._start, self._end = start[self._index.order], end[self._index.order]

    def covering(self, key: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Row (in the input order) of the interval of ``key`` covering ``ts``, else -1.

        The latest interval starting at or before ``ts`` is the only one that can cover it.
        """
        return self.covering_known(key, ts)[0]

    def covering_known(self, key: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(``covering``, whether each key has any interval at all), from one search: a key
        with intervals has one at or before ``ts``, or its first one just after."""
        key = np.asarray(key, dtype=np.int64)
        ts = int(ts) if np.ndim(ts) == 0 else np.broadcast_to(np.asarray(ts, np.int64), key.shape)
        if len(self._key) == 0:
            return np.full(len(key), -1, dtype=np.int64), np.zeros(key.shape, dtype=bool)
        pos = self._index.position(key, ts, "right")  # the first record after ts
        before = np.maximum(pos - 1, 0)
        at_or_before = (pos > 0) & (self._key[before] == key)
        hit = at_or_before & (self._start[before] <= ts) & (ts <= self._end[before])
        after = self._key[np.minimum(pos, len(self._key) - 1)] == key
        return np.where(hit, self._index.order[before], -1), at_or_before | after
