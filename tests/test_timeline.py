"""Point-in-time look-ups against a brute-force reading of the same records."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.data.timeline import KeyedIntervals, KeyedTimeline, common_value, distinct

# Keys that fit in int64 beside the time span are searched directly; 2**55 apart they do not,
# and their ranks are searched first: both must read the same records.
WIDE = [1, 2**55]


@pytest.mark.parametrize("one_time", [True, False])
@pytest.mark.parametrize("scale", WIDE)
def test_sums_match_brute_force_with_unknown_and_missing_keys(one_time, scale):
    rng = np.random.default_rng(7)
    key, ts = rng.integers(-1, 30, 500) * scale, rng.integers(0, 1000, 500)
    values = rng.normal(size=(500, 2))
    line = KeyedTimeline(key, ts, values)
    q = rng.integers(-3, 60, 200) * scale  # about half the keys never occur
    hi = np.full(200, 640) if one_time else rng.integers(0, 1100, 200)
    lo = hi - 300
    expected = np.array(
        [values[(key == k) & (ts >= a) & (ts < b) & (k >= 0)].sum(axis=0)
         for k, a, b in zip(q, lo, hi, strict=True)]
    )  # fmt: skip
    np.testing.assert_allclose(line.sum_between(q, lo, hi), expected, atol=1e-9)
    before = np.array(
        [values[(key == k) & (ts < b) & (k >= 0)].sum(axis=0) for k, b in zip(q, hi, strict=True)]
    )
    np.testing.assert_allclose(line.sum_before(q, hi), before, atol=1e-9)


@pytest.mark.parametrize("scale", WIDE)
def test_covering_matches_brute_force_with_unknown_keys(scale):
    rng = np.random.default_rng(8)
    key = np.repeat(np.arange(20), 5) * scale
    start = np.tile(np.arange(5) * 100, 20) + rng.integers(0, 10, 100)
    end = start + rng.integers(0, 90, 100)
    slots = KeyedIntervals(key, start, end)
    q, t = rng.integers(-2, 40, 300) * scale, rng.integers(-50, 600, 300)
    got, known = slots.covering_known(q, t)
    assert np.array_equal(got, slots.covering(q, t))
    for k, at, row, has in zip(q, t, got, known, strict=True):
        hits = np.flatnonzero((key == k) & (start <= at) & (at <= end))
        assert row == (hits[0] if len(hits) else -1)
        assert has == (k in key)


def test_one_key_in_one_window_sums_like_each_row_alone():
    line = KeyedTimeline(np.array([4, 4, 4, 2]), np.array([1, 5, 9, 3]), np.array([1.0, 2, 4, 8]))
    got = line.sum_between(np.full(6, 4), 2, 9)  # a request's viewer on every candidate row
    np.testing.assert_array_equal(got, np.full(6, 2.0))
    assert line.sum_before(np.full(3, 7), 9).tolist() == [0.0, 0.0, 0.0]


def test_one_time_given_as_a_number_reads_exactly_as_an_array_of_it():
    rng = np.random.default_rng(9)
    key, ts = rng.integers(-1, 40, 800), rng.integers(0, 1000, 800)
    line = KeyedTimeline(key, ts, rng.normal(size=(800, 3)))
    slots = KeyedIntervals(np.repeat(np.arange(30), 4), np.tile(np.arange(4) * 250, 30),
                           np.tile(np.arange(4) * 250 + 200, 30))  # fmt: skip
    q = rng.integers(-3, 60, 300)
    for t in (0, 430, 999, 5000):
        array = np.full(len(q), t)
        got = line.sum_between(q, t - 300, t)
        assert np.array_equal(got, line.sum_between(q, array - 300, array))
        assert np.array_equal(line.sum_before(q, t), line.sum_before(q, array))
        for a, b in zip(slots.covering_known(q, t), slots.covering_known(q, array), strict=True):
            assert np.array_equal(a, b)
    assert common_value(np.full(4, 7)) == 7 and isinstance(common_value(np.full(4, 7)), int)
    assert common_value(np.array([1, 2])).tolist() == [1, 2]
    assert common_value(np.array([], dtype=np.int64)).size == 0


@pytest.mark.parametrize("spread", [1, 3, 10**9])  # a short range (a table) or a long one (sort)
def test_distinct_equals_numpy_unique(spread):
    rng = np.random.default_rng(spread)
    for n in (0, 1, 2, 50, 700):
        key = rng.integers(-3, 40, n) * spread + 10**12
        for k in (key, np.unique(key)):  # as drawn, and strictly increasing already
            got, want = distinct(k), np.unique(k, return_inverse=True)
            for a, b in zip(got, want, strict=True):
                assert a.dtype == b.dtype and np.array_equal(a, b)
            assert got[0] is not k
            unsorted = distinct(k, sort=False)  # None only where a sort would be needed
            wide = len(k) > 1 and not (np.diff(k) > 0).all() and np.ptp(k) > 8 * len(k)
            assert (unsorted is None) == wide
            if unsorted is not None:
                assert all(np.array_equal(a, b) for a, b in zip(unsorted, want, strict=True))
