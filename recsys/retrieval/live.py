"""Live-now retrieval: candidates restricted to the rooms / products available at query time.

A room is enterable only while one of its sessions is on air, a product only while it sits on the
shelf of a live room; ``recsys.data.live.availability_intervals`` gives both as closed intervals
``(entity, start, end)``. ``LiveSchedule`` answers "what is live at t" from them, and
``LiveRetriever`` searches a ``CandidateIndex`` among only those entities. Nothing outside the
live set is ever returned; rows with fewer than ``k`` live entities are padded with id -1.

The live set is constant between consecutive interval boundaries, so each such *segment* is one
state of the catalogue. Two ways to search within a state:

* ``"selector"``: the full index searched with a FAISS ID selector (a bitmap over positions, or a
  hash set when the live set is tiny). No extra memory, but an approximate index keeps its
  recall only while the live set is dense: IVF probes lists full of off-air entries and HNSW
  spends its beam on them, so at a small live share fewer of the true top-k live neighbours are
  reached. The search is therefore widened (``nprobe``, ``ef_search``) by ``share ** -widen``;
  ``widen=0.5`` roughly holds IVF's unfiltered recall from 50% down to 10% live.
* ``"segment"``: an exact flat sub-index over the segment's live vectors, built on the first query
  that lands in the segment and kept in a small LRU cache. It costs one copy of the live vectors
  per cached segment and ``live x d`` work per query, which is cheap exactly when the live share
  is small, and it is exact whatever the base index (vectors come from the index's full-precision
  storage; a PQ index without refine supplies decoded approximations).

On a ``Flat`` index both strategies return the exact filtered top-k. ``"auto"`` (the default)
takes ``"segment"`` while a segment has at most ``segment_max`` live entities, where an exact
scan is about as fast as an approximate search of the whole catalogue, and ``"selector"`` above.

Over-fetching unfiltered results and dropping off-air ones was rejected: at a live share p it
needs about k / p candidates and still cannot promise k live results or the exact top-k.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np

from recsys.data.availability import merge_intervals, sorted_unique
from recsys.data.live import availability_intervals
from recsys.retrieval import _faiss
from recsys.retrieval.index import CandidateIndex, check_k, check_vectors, padding

Strategy = Literal["auto", "selector", "segment"]
STRATEGIES: tuple[str, ...] = ("auto", "selector", "segment")
SEGMENT_MAX = 50_000  # live entities up to which "auto" scans them exactly


def _check_intervals(entity, start, end) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = [np.asarray(a) for a in (entity, start, end)]
    for name, a in zip(("entity", "start", "end"), arrays, strict=True):
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise ValueError(f"availability {name} must be a 1-D integer array, got {a.dtype}")
    if not len(arrays[0]) == len(arrays[1]) == len(arrays[2]):
        raise ValueError(f"availability arrays differ in length: {[len(a) for a in arrays]}")
    entity, start, end = (a.astype(np.int64) for a in arrays)
    if np.any(end < start):
        row = int(np.flatnonzero(end < start)[0])
        raise ValueError(f"availability interval {row}: end {end[row]} < start {start[row]}")
    return entity, start, end


class LiveSchedule:
    """Which entities are live when, from closed ``[start, end]`` availability intervals."""

    def __init__(self, entity: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
        entity, start, end = _check_intervals(entity, start, end)
        # Merged per entity, intervals are disjoint, so a live set never repeats an entity.
        e, s, stop = merge_intervals(entity, start, end + 1)
        order = np.argsort(s, kind="stable")
        self._entity, self._start, self._stop = e[order], s[order], stop[order]
        self._max_span = int((stop - s).max()) if len(s) else 0
        self._bounds = sorted_unique(np.concatenate([s, stop]))
        self.entities = sorted_unique(e)

    @classmethod
    def from_tables(cls, tables, target: str, vocab, shelf: str = "session") -> LiveSchedule:
        """The schedule of ``target`` ("room" | "product") in vocabulary indices."""
        return cls(*availability_intervals(tables, target, vocab, shelf=shelf))

    def __len__(self) -> int:
        """Number of merged intervals."""
        return len(self._start)

    def live_at(self, t: int) -> np.ndarray:
        """Ascending ids of the entities live at time ``t``."""
        t = int(t)
        # Only intervals that started within the longest span before t can still be open.
        lo = np.searchsorted(self._start, t - self._max_span, side="right")
        hi = np.searchsorted(self._start, t, side="right")
        return np.sort(self._entity[lo:hi][self._stop[lo:hi] > t])

    def segment(self, ts: np.ndarray) -> np.ndarray:
        """Segment number of each time; equal numbers mean identical live sets."""
        return np.searchsorted(self._bounds, np.asarray(ts, dtype=np.int64), side="right") - 1


@dataclass
class _State:
    """One segment's live entities as index positions, and what each strategy built for it."""

    positions: np.ndarray
    selector: _faiss.Selector | None = None
    wide: CandidateIndex | None = None  # the index searched wider, for the selector
    sub: CandidateIndex | None = None


class LiveRetriever:
    """Searches ``index`` among the entities of ``schedule`` live at each query's time.

    Every entity of the schedule must be in the index (ids in the same space, e.g. vocabulary
    indices on both sides). ``segment_max``: the largest live set ``"auto"`` scans exactly;
    ``widen``: exponent of the selector's search widening (0 = the index's own settings).
    Keeps per-segment state in an LRU cache of ``cache_size`` segments; not safe to share
    between threads.
    """

    def __init__(
        self,
        index: CandidateIndex,
        schedule: LiveSchedule,
        *,
        segment_max: int = SEGMENT_MAX,
        widen: float = 0.5,
        cache_size: int = 4,
    ) -> None:
        if cache_size < 1 or segment_max < 0 or widen < 0:
            raise ValueError(
                f"need cache_size >= 1, segment_max >= 0, widen >= 0: got {cache_size}, "
                f"{segment_max}, {widen}"
            )
        index.positions(schedule.entities, "availability entities")
        self.index, self.schedule = index, schedule
        self.segment_max, self.widen, self.cache_size = segment_max, widen, cache_size
        self._cache: OrderedDict[int, _State] = OrderedDict()

    def live_at(self, t: int) -> np.ndarray:
        return self.schedule.live_at(t)

    def search(
        self, queries: np.ndarray, t, k: int, strategy: Strategy = "auto"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` live candidates: (B, k) float32 scores, (B, k) int64 ids (-1 = padding).

        ``t``: one time for all queries or (B,) times; queries are grouped by live segment, so
        the work is one index search per distinct live set in the batch.
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        k = check_k(k)
        queries = check_vectors(queries, self.index.dim, "queries")
        ts = np.broadcast_to(np.asarray(t, dtype=np.int64), (len(queries),))
        seg = self.schedule.segment(ts)
        scores, ids = padding(len(queries), k)
        order = np.argsort(seg, kind="stable")
        cuts = np.flatnonzero(np.diff(seg[order])) + 1
        for rows in np.split(order, cuts) if len(order) else []:
            state = self._state(int(seg[rows[0]]), int(ts[rows[0]]))
            scores[rows], ids[rows] = self._search_state(state, queries[rows], k, strategy)
        return scores, ids

    def _state(self, segment: int, t: int) -> _State:
        state = self._cache.get(segment)
        if state is None:
            live = self.schedule.live_at(t)
            state = _State(np.sort(self.index.positions(live)))
            self._cache[segment] = state
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(segment)
        return state

    def _search_state(self, state: _State, queries: np.ndarray, k: int, strategy: Strategy):
        if len(state.positions) == 0:
            return padding(len(queries), k)
        if strategy == "auto":
            strategy = "segment" if len(state.positions) <= self.segment_max else "selector"
        if strategy == "selector":
            if state.selector is None:
                n = len(self.index)
                state.selector = _selector(state.positions, n)
                state.wide = self.index.widened((len(state.positions) / n) ** -self.widen)
            return state.wide.search_positions(queries, k, state.selector)
        if state.sub is None:
            pos = state.positions
            state.sub = CandidateIndex.build(self.index.vectors(pos), self.index.ids[pos])
        return state.sub.search(queries, k)


def _selector(positions: np.ndarray, n: int) -> _faiss.Selector:
    """A bitmap (n / 8 bytes) unless a hash set of the live positions is smaller."""
    if len(positions) * 64 < n:
        return _faiss.batch_selector(positions)
    return _faiss.bitmap_selector(positions, n)
