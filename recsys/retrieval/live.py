"""Live-now retrieval: candidates restricted to the rooms / products available at query time.

A room is enterable only while one of its sessions is on air, a product only while it sits on the
shelf of a live room; ``recsys.data.live.availability_intervals`` gives both as closed intervals
``(entity, start, end)``. ``LiveSchedule`` answers "what is live at t" from them, and
``LiveRetriever`` searches a ``CandidateIndex`` among only those entities. Nothing outside the
live set is ever returned; rows with fewer than ``k`` live entities are padded with id -1.

The live set is constant between consecutive interval boundaries, so each such *segment* is one
state of the catalogue. Three ways to search within a state; the last two build their state on
the first query that lands in the segment and keep it in a small LRU cache:

* ``"selector"``: the full index searched with a FAISS ID selector (a bitmap over positions, or a
  hash set when the live set is tiny). No extra memory, but every probed IVF list and every HNSW
  beam step still walks the off-air entries, and an approximate index loses recall at a small
  live share, because the true top-k live neighbours lie further out. The search is therefore
  widened (``nprobe``, ``ef_search``) by ``share ** -widen``.
* ``"segment"``: on an IVF index (``IVF*,Flat`` or ``IVF*,PQ*``, with or without ``RFlat``), a
  sub-index of the same kind over only the live vectors (``CandidateIndex.subset``). It reuses
  the parent's trained coarse quantizer and PQ codebooks and puts every vector in the list it
  has in the parent, so nothing is trained and the build is one pass over the live vectors. It
  is searched with the parent's ``nprobe`` / ``k_factor``, widened by ``share ** -widen`` like the
  selector, and then returns exactly what the selector returns (the same lists probed, the same
  live members scanned) while touching only live entries. At 10% of 1M live it ran at 2.0x the
  unfiltered ``IVF4096,Flat`` (nprobe 16; recall 0.956 against 0.957 unfiltered; built in
  0.13 s) and 3.1x the unfiltered ``IVF2048,PQ32,RFlat`` (recall 0.985 against 0.953; 0.5 s),
  where the widened selector ran at 0.5x and 1.1x. Costs a copy of the live vectors (or codes)
  per cached segment. On an index without such a stage it means ``"exact"``.
* ``"exact"``: an exact Flat sub-index over the live vectors: ``live x d`` work per query, exact
  whatever the base index (vectors come from its full-precision storage; a PQ index without
  refine supplies decoded approximations).

An HNSW index keeps the exact sub-index rather than getting a graph of its own: an HNSW build
runs at 4,000-6,000 vectors a second here (1M in 176-233 s on 2 threads), so a segment with
100k live entities would wait 15-25 s for its first query.

``"auto"`` (the default) scans exactly while a segment has at most ``exact_max`` live entities,
and above that uses ``"segment"`` on IVF indexes and ``"selector"`` otherwise. The default
``exact_max`` depends on the index (``benchmarks/results/retrieval.md``, 1M x 64, top-100):

* IVF: ``EXACT_MAX_IVF`` = 20,000. The exact scan ran at 1.7x the unfiltered ``IVF4096,Flat``
  (nprobe 16) at 10k live and 0.19x at 100k (its cost grows with the live count), so it keeps
  up to about 17-19k; there it is also the better choice, as the widened IVF sub-index reached
  only recall 0.934 at 10k. Above, the IVF sub-index is faster (2.0x at 100k, 1.2x at 500k).
* HNSW (and IVF under a pre-transform): ``EXACT_MAX`` = 50,000. The selector keeps too little
  recall at small shares (0.57 at 1% and 0.86 at 10% live, even widened), so exactness is worth
  a slower scan (0.33x the unfiltered ``HNSW32`` at 100k); at 500k live the widened selector
  holds recall 0.967 at 0.71x, the exact scan only 0.03x.
* brute force (``Flat``, ``PQ``): always exact, since the selector scans every stored vector
  anyway (the exact sub-index ran 18x faster than the selector at 10% live and 2.6x at 50%).

Over-fetching unfiltered results and dropping off-air ones was rejected: at a live share p it
needs about k / p candidates and still cannot promise k live results or the exact top-k.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np

from recsys.data.availability import merge_intervals, sorted_unique
from recsys.data.live import availability_intervals
from recsys.retrieval import _faiss
from recsys.retrieval.index import CandidateIndex, check_k, check_vectors, padding

Strategy = Literal["auto", "selector", "segment", "exact"]
STRATEGIES: tuple[str, ...] = ("auto", "selector", "segment", "exact")
EXACT_MAX_IVF = 20_000  # "auto" on an IVF index: exact up to here, "segment" above
EXACT_MAX = 50_000  # "auto" on HNSW and other graph-like indexes: exact, then "selector"


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
    wide: CandidateIndex | None = None  # the full index searched wider, for the selector
    segment: CandidateIndex | None = None  # the IVF sub-index, searched wider
    exact: CandidateIndex | None = None


def default_exact_max(index: CandidateIndex) -> int:
    """The largest live set ``"auto"`` scans exactly on ``index`` (see the module docstring)."""
    if index.can_subset:
        return EXACT_MAX_IVF
    stages = index.stages
    if stages["ivf"] or stages["hnsw"]:
        return EXACT_MAX
    return sys.maxsize  # a brute-force index: the selector would scan every vector anyway


class LiveRetriever:
    """Searches ``index`` among the entities of ``schedule`` live at each query's time.

    Every entity of the schedule must be in the index (ids in the same space, e.g. vocabulary
    indices on both sides). ``exact_max``: the largest live set ``"auto"`` scans exactly (None:
    ``default_exact_max(index)``); ``widen``: exponent of the search widening of ``"selector"``
    and ``"segment"`` (0 = the index's own settings). Keeps per-segment state in an LRU cache
    of ``cache_size`` segments; not safe to share between threads.
    """

    def __init__(
        self,
        index: CandidateIndex,
        schedule: LiveSchedule,
        *,
        exact_max: int | None = None,
        widen: float = 0.5,
        cache_size: int = 4,
    ) -> None:
        exact_max = default_exact_max(index) if exact_max is None else exact_max
        if cache_size < 1 or exact_max < 0 or widen < 0:
            raise ValueError(
                f"need cache_size >= 1, exact_max >= 0, widen >= 0: got {cache_size}, "
                f"{exact_max}, {widen}"
            )
        index.positions(schedule.entities, "availability entities")
        self.index, self.schedule = index, schedule
        self.exact_max, self.widen, self.cache_size = exact_max, widen, cache_size
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
        if len(queries) == 1:  # one request: one live set, nothing to group
            return self._search_state(self._state(int(seg[0]), int(ts[0])), queries, k, strategy)
        scores, ids = padding(len(queries), k)
        order = np.argsort(seg, kind="stable")
        cuts = np.flatnonzero(np.diff(seg[order])) + 1
        for rows in np.split(order, cuts) if len(order) else []:
            state = self._state(int(seg[rows[0]]), int(ts[rows[0]]))
            scores[rows], ids[rows] = self._search_state(state, queries[rows], k, strategy)
        return scores, ids

    def choose(self, live: int, strategy: Strategy = "auto") -> str:
        """The strategy that serves a live set of ``live`` entities: "selector" | "segment" |
        "exact" ("segment" means "exact" on an index without a reusable IVF stage)."""
        if strategy == "auto":
            if live <= self.exact_max:
                return "exact"
            return "segment" if self.index.can_subset else "selector"
        return "exact" if strategy == "segment" and not self.index.can_subset else strategy

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
        pos = state.positions
        if len(pos) == 0:
            return padding(len(queries), k)
        strategy = self.choose(len(pos), strategy)
        wider = (len(pos) / len(self.index)) ** -self.widen
        if strategy == "selector":
            if state.selector is None:
                state.selector = _selector(pos, len(self.index))
                state.wide = self.index.widened(wider)
            return state.wide.search_positions(queries, k, state.selector)
        if strategy == "segment":
            if state.segment is None:
                state.segment = self.index.subset(pos).widened(wider)
            return state.segment.search(queries, k)
        if state.exact is None:
            state.exact = CandidateIndex.build(self.index.vectors(pos), self.index.ids[pos])
        return state.exact.search(queries, k)


def _selector(positions: np.ndarray, n: int) -> _faiss.Selector:
    """A bitmap (n / 8 bytes) unless a hash set of the live positions is smaller."""
    if len(positions) * 64 < n:
        return _faiss.batch_selector(positions)
    return _faiss.bitmap_selector(positions, n)
