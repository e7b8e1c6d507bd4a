"""Fast id and time look-ups give exactly what the plain pandas / numpy calls give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.positions import IdPositions
from recsys.data.timeline import search


@pytest.mark.parametrize(
    "ids",
    [
        np.array([5, 0, 3, 9, 2]),  # small dense ids: the table
        np.array([2**62, -7, 12, 2**40 + 3]),  # pseudonyms and negatives: the sorted search
        np.arange(100_000)[::-1].copy(),
        np.array([], dtype=np.int64),
    ],
)
def test_id_positions_equal_pandas_get_indexer(ids):
    rng = np.random.default_rng(0)
    pool = np.r_[ids, -1, 0, 1, 10**6, 2**63 - 1, -(2**63)]
    for shape in ((0,), (1,), (500,), (3, 4)):
        queries = rng.choice(pool, shape) if len(pool) else np.zeros(shape, np.int64)
        expected = pd.Index(ids.astype(np.int64)).get_indexer(queries.ravel()).reshape(shape)
        got = IdPositions(ids).of(queries)
        assert got.dtype == np.int64 and np.array_equal(got, expected)
    index = IdPositions(ids)
    for one in np.r_[pool[:5], pool[-6:]]:  # one query (a request's viewer): ids and strangers
        got = index.of(np.array([[one]]))
        want = pd.Index(ids.astype(np.int64)).get_indexer([one])[0]
        assert got.shape == (1, 1) and got[0, 0] == want


def test_search_equals_searchsorted_for_repeated_and_mixed_needles():
    rng = np.random.default_rng(1)
    haystack = np.sort(rng.integers(0, 1000, 5000))
    for needles in (np.full(300, 417), rng.integers(-5, 1005, 300), np.array([3]), np.array([])):
        for side in ("left", "right"):
            assert np.array_equal(
                search(haystack, needles, side), np.searchsorted(haystack, needles, side=side)
            )
