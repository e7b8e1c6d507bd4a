"""Live shelves: finding the rows that show given products."""

from __future__ import annotations

import numpy as np

from recsys.serving.live import LiveProducts


def _shelf(product: np.ndarray) -> LiveProducts:
    n = len(product)
    return LiveProducts(product, np.zeros(n, np.int64), np.arange(n), np.zeros(n, bool))


def test_rows_of_matches_isin_with_repeats_absent_and_duplicate_ids():
    rng = np.random.default_rng(3)
    shelf = _shelf(rng.integers(0, 50, 400))  # most products on several shelves
    for size in (0, 1, 7, 60):
        ids = rng.integers(-5, 70, size)  # some absent, some repeated
        expected = np.flatnonzero(np.isin(shelf.product, ids))
        np.testing.assert_array_equal(shelf.rows_of(ids), expected)


def test_rows_of_an_empty_shelf_is_empty():
    assert len(_shelf(np.zeros(0, np.int64)).rows_of(np.array([1, 2]))) == 0
