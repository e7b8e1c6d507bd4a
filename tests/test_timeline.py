"""Point-in-time look-ups against a brute-force reading of the same records."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.data.timeline import KeyedIntervals, KeyedTimeline


@pytest.mark.parametrize("one_time", [True, False])
def test_sums_match_brute_force_with_unknown_and_missing_keys(one_time):
    rng = np.random.default_rng(7)
    key, ts = rng.integers(-1, 30, 500), rng.integers(0, 1000, 500)
    values = rng.normal(size=(500, 2))
    line = KeyedTimeline(key, ts, values)
    q = rng.integers(-3, 60, 200)  # about half the keys never occur
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


def test_covering_matches_brute_force_with_unknown_keys():
    rng = np.random.default_rng(8)
    key = np.repeat(np.arange(20), 5)
    start = np.tile(np.arange(5) * 100, 20) + rng.integers(0, 10, 100)
    end = start + rng.integers(0, 90, 100)
    slots = KeyedIntervals(key, start, end)
    q, t = rng.integers(-2, 40, 300), rng.integers(0, 520, 300)
    got = slots.covering(q, t)
    for k, at, row in zip(q, t, got, strict=True):
        hits = np.flatnonzero((key == k) & (start <= at) & (at <= end))
        assert row == (hits[0] if len(hits) else -1)


def test_one_key_in_one_window_sums_like_each_row_alone():
    line = KeyedTimeline(np.array([4, 4, 4, 2]), np.array([1, 5, 9, 3]), np.array([1.0, 2, 4, 8]))
    got = line.sum_between(np.full(6, 4), 2, 9)  # a request's viewer on every candidate row
    np.testing.assert_array_equal(got, np.full(6, 2.0))
    assert line.sum_before(np.full(3, 7), 9).tolist() == [0.0, 0.0, 0.0]
