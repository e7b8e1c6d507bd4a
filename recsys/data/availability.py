"""Which items are available at a given moment, from item availability intervals.

Live rooms and live shelves come and go: a streamer is enterable only while one of its
sessions is on air, a product only while it sits on the shelf of a live room. Given the
intervals during which each item is available, ``live_sets`` answers "which items were
available at time t" for many query times at once, as a CSR over the queries.

Intervals are closed, ``[start, end]`` in integer seconds, so an event stamped with the last
second of a session still counts as live. Internally they become half-open ``[start, end + 1)``.

The set of available items only changes at interval boundaries, so the time line is cut into
elementary segments between consecutive boundaries; each distinct segment that a query falls in
gets its set computed once, and queries in the same segment share it.
"""

from __future__ import annotations

import numpy as np


def _as_int64(*arrays: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(a, dtype=np.int64) for a in arrays]


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """Ascending distinct values (sort-based: np.unique hashes, slow on many distinct int64)."""
    s = np.sort(np.asarray(values, dtype=np.int64))
    if len(s) == 0:
        return s
    return s[np.concatenate(([True], s[1:] != s[:-1]))]


def in_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_set)`` for an ascending ``sorted_set``, in O(n log m): no sort
    of the (possibly huge) set per call."""
    values = np.asarray(values)
    if len(sorted_set) == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[pos] == values


def _expand_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [lo, hi): (owner index, position) of every position, flattened."""
    lengths = np.maximum(hi - lo, 0)
    owner = np.repeat(np.arange(len(lo)), lengths)
    starts = np.zeros(len(lo), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    pos = np.arange(lengths.sum()) - np.repeat(starts, lengths) + np.repeat(lo, lengths)
    return owner, pos


def gather_rows(
    indptr: np.ndarray, values: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The CSR made of the given rows of (indptr, values), in the given order."""
    rows = np.asarray(rows, dtype=np.int64)
    starts, lengths = indptr[rows], indptr[rows + 1] - indptr[rows]
    out_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_ptr[1:])
    gather = np.repeat(starts - out_ptr[:-1], lengths) + np.arange(out_ptr[-1])
    return out_ptr, values[gather]


def live_segments(
    item: np.ndarray, start: np.ndarray, end: np.ndarray, query_ts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shared form of ``live_sets``: (row of each query, indptr, items) over distinct sets.

    Queries falling in the same segment share one row, so memory grows with the number of
    distinct segments hit, not with the number of queries.
    """
    item, start, end, query_ts = _as_int64(item, start, end, query_ts)
    if np.any(end < start):
        bad = int(np.flatnonzero(end < start)[0])
        raise ValueError(f"availability interval {bad}: end {end[bad]} < start {start[bad]}")
    stop = end + 1
    bounds = sorted_unique(np.concatenate([start, stop]))
    # Segment k is [bounds[k], bounds[k + 1]); -1 and the last segment have nothing live.
    query_seg = np.searchsorted(bounds, query_ts, side="right") - 1
    needed = sorted_unique(query_seg[(query_seg >= 0) & (query_seg < len(bounds) - 1)])
    seg_ptr, seg_items = _segment_sets(item, start, stop, bounds, needed)
    # Queries outside every live segment read an extra empty row appended at the end.
    rows = np.full(len(query_ts), len(needed), dtype=np.int64)
    if len(needed):
        pos = np.minimum(np.searchsorted(needed, query_seg), len(needed) - 1)
        rows = np.where(needed[pos] == query_seg, pos, rows)
    return rows, np.append(seg_ptr, seg_ptr[-1]), seg_items


def live_sets(
    item: np.ndarray, start: np.ndarray, end: np.ndarray, query_ts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items whose interval covers each query time.

    ``item``, ``start``, ``end``: (M,) one availability interval per row (an item may have
    several, possibly overlapping). ``query_ts``: (Q,). Returns ``(indptr, items)``, a CSR over
    the queries: ``items[indptr[q]:indptr[q + 1]]`` are the available items at ``query_ts[q]``,
    sorted ascending, without duplicates.
    """
    rows, seg_ptr, seg_items = live_segments(item, start, end, query_ts)
    return gather_rows(seg_ptr, seg_items, rows)


def is_available(
    item: np.ndarray, start: np.ndarray, end: np.ndarray, query_item: np.ndarray, query_ts
) -> np.ndarray:
    """(Q,) bool: whether ``query_item[q]`` has an interval covering ``query_ts[q]``."""
    item, start, end, query_item, query_ts = _as_int64(item, start, end, query_item, query_ts)
    if len(item) == 0:
        return np.zeros(len(query_item), dtype=bool)
    m_item, m_start, m_stop = merge_intervals(item, start, end + 1)
    t0 = min(int(m_start.min()), int(query_ts.min(initial=m_start.min())))
    span = max(int(m_stop.max()), int(query_ts.max(initial=0)) + 1) - t0 + 1
    if (int(max(m_item.max(), query_item.max(initial=0))) + 1) * span >= 2**62:
        raise ValueError("item ids x time span too large to index availability")
    # The last merged interval of the same item starting at or before ts must still be open.
    keys = m_item * span + (m_start - t0)
    pos = np.searchsorted(keys, query_item * span + (query_ts - t0), side="right") - 1
    safe = np.maximum(pos, 0)
    return (pos >= 0) & (m_item[safe] == query_item) & (m_stop[safe] > query_ts)


def merge_intervals(
    item: np.ndarray, start: np.ndarray, stop: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-open intervals merged per item where they overlap or touch; sorted by (item, start).

    A product shown several times in one broadcast, or on two shelves at once, becomes one
    interval, so no item appears twice in a segment's set.
    """
    if len(item) == 0:
        return item, start, stop
    order = np.lexsort((start, item))
    item, start, stop = item[order], start[order], stop[order]
    first_of_item = np.concatenate(([True], item[1:] != item[:-1]))
    group = np.cumsum(first_of_item) - 1
    # Running max of stop within each item: offset items apart so one accumulate serves all.
    t0, span = int(start.min()), int(stop.max() - start.min()) + 1
    if (group[-1] + 1) * span >= 2**62:
        raise ValueError("availability intervals span too long a time to merge")
    reach = np.maximum.accumulate(stop - t0 + group * span) - group * span + t0
    opens = first_of_item.copy()
    opens[1:] |= start[1:] > reach[:-1]
    closes = np.append(np.flatnonzero(opens)[1:] - 1, len(item) - 1)
    return item[opens], start[opens], reach[closes]


def _segment_sets(
    item: np.ndarray, start: np.ndarray, stop: np.ndarray, bounds: np.ndarray, needed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """CSR over the ``needed`` segments of the distinct items live in each, ascending."""
    item, start, stop = merge_intervals(item, start, stop)
    # Interval i covers segments [lo_i, hi_i); keep only the needed ones among them.
    lo = np.searchsorted(needed, np.searchsorted(bounds, start))
    hi = np.searchsorted(needed, np.searchsorted(bounds, stop))
    owner, seg = _expand_ranges(lo, hi)
    width = int(item.max()) + 1 if len(item) else 1
    if len(needed) * width >= 2**62:
        raise ValueError("too many segments x items to index availability")
    # Merged intervals are disjoint per item, so (segment, item) keys are already distinct.
    key = np.sort(seg * width + item[owner])
    indptr = np.zeros(len(needed) + 1, dtype=np.int64)
    np.cumsum(np.bincount(key // width, minlength=len(needed)), out=indptr[1:])
    return indptr, key % width


def rows_contain(indptr: np.ndarray, items: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(Q,) bool: whether row q of a CSR with ascending rows contains ``query[q]``."""
    query = np.asarray(query, dtype=np.int64)
    n_rows = len(indptr) - 1
    if n_rows != len(query):
        raise ValueError(f"{len(query)} queries for a CSR of {n_rows} rows")
    if len(items) == 0:
        return np.zeros(n_rows, dtype=bool)
    width = int(max(items.max(), query.max(initial=0))) + 1
    row_of = np.repeat(np.arange(n_rows), np.diff(indptr))
    keys = row_of * width + items  # ascending because rows are ascending
    wanted = np.arange(n_rows) * width + query
    pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return keys[pos] == wanted
