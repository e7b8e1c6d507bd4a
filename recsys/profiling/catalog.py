"""Lookups from the products and streamers tables that turn event ids into profile facts.

A product gives its category, its origin (imported or domestic brand) and, for a paid price,
where that price sits in the category: the percentile among the category's catalogue prices
and the log ratio to the category's median price. A streamer gives its category.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Catalog:
    categories: tuple[str, ...]
    product_index: pd.Index  # product_id -> position
    product_category: np.ndarray  # (P,) category code
    product_imported: np.ndarray  # (P,) bool
    streamer_index: pd.Index  # streamer_id -> position
    streamer_category: np.ndarray  # (S,) category code
    sorted_prices: np.ndarray  # catalogue prices sorted by (category, price)
    category_start: np.ndarray  # (C + 1,) offsets of each category in sorted_prices
    category_median: np.ndarray  # (C,) median catalogue price (NaN where none)

    @classmethod
    def from_tables(
        cls,
        products: pd.DataFrame,
        streamers: pd.DataFrame,
        categories: tuple[str, ...] | None = None,
    ) -> Catalog:
        """Category codes follow ``categories`` (default: sorted names of both tables)."""
        _require(products, "products", ("product_id", "category", "imported", "price"))
        _require(streamers, "streamers", ("streamer_id", "category"))
        if categories is None:
            names = set(products["category"].astype(str)) | set(streamers["category"].astype(str))
            categories = tuple(sorted(names))
        product_category = _codes(products["category"], categories, "products")
        streamer_category = _codes(streamers["category"], categories, "streamers")
        sorted_prices, start, median = _price_table(
            products["price"].to_numpy(dtype=np.float64), product_category, len(categories)
        )
        return cls(
            categories=tuple(categories),
            product_index=pd.Index(products["product_id"].to_numpy(dtype=np.int64)),
            product_category=product_category,
            product_imported=products["imported"].to_numpy(dtype=bool),
            streamer_index=pd.Index(streamers["streamer_id"].to_numpy(dtype=np.int64)),
            streamer_category=streamer_category,
            sorted_prices=sorted_prices,
            category_start=start,
            category_median=median,
        )

    def product_positions(self, product_id: np.ndarray, present: np.ndarray) -> np.ndarray:
        """Row of each present product id in the products table; -1 where none is given."""
        return _positions(self.product_index, product_id, present, "product_id", "products")

    def streamer_positions(self, streamer_id: np.ndarray, present: np.ndarray) -> np.ndarray:
        return _positions(self.streamer_index, streamer_id, present, "streamer_id", "streamers")

    def price_position(
        self, category: np.ndarray, price: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mid-rank percentile in [0, 1] of each price among its category's catalogue prices,
        and log(price / category median). Rows without a category get 0.5 and 0."""
        cat = np.maximum(category, 0)
        lo, hi = self.category_start[cat], self.category_start[cat + 1]
        # Offsetting by category lets one sorted array answer every category's rank query.
        span = (
            float(self.sorted_prices.max(initial=0.0)) + float(np.nanmax(price, initial=0.0)) + 1.0
        )
        keys = self.sorted_prices + span * np.repeat(
            np.arange(len(self.categories)), np.diff(self.category_start)
        )
        query = price + span * cat
        below = np.searchsorted(keys, query, side="left") - lo
        upto = np.searchsorted(keys, query, side="right") - lo
        size = np.maximum(hi - lo, 1)
        pct = (below + upto) / (2.0 * size)
        median = self.category_median[cat]
        ratio = np.log(np.maximum(price, 1e-9) / np.where(np.isfinite(median), median, 1.0))
        known = (category >= 0) & (hi > lo) & np.isfinite(median) & (price > 0)
        return np.where(known, pct, 0.5), np.where(known, ratio, 0.0)


def _price_table(price: np.ndarray, category: np.ndarray, n_categories: int):
    """(prices sorted by (category, price), (C + 1,) category offsets, (C,) medians)."""
    order = np.lexsort((price, category))
    start = np.searchsorted(category[order], np.arange(n_categories + 1))
    sorted_prices = price[order]
    median = np.full(n_categories, np.nan)
    for c in np.flatnonzero(start[1:] > start[:-1]):  # one median per category
        median[c] = np.median(sorted_prices[start[c] : start[c + 1]])
    return sorted_prices, start, median


def _require(frame: pd.DataFrame, table: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"table {table!r}: missing columns {missing}")


def _codes(values: pd.Series, categories: tuple[str, ...], table: str) -> np.ndarray:
    codes = pd.Index(categories).get_indexer(values.astype(str))
    if (codes < 0).any():
        row = int(np.flatnonzero(codes < 0)[0])
        raise ValueError(
            f"table {table!r} row {row}: field 'category': {values.iloc[row]!r} is not one of "
            f"the profile categories {list(categories)}"
        )
    return codes.astype(np.int64)


def _positions(
    index: pd.Index, ids: np.ndarray, present: np.ndarray, field: str, table: str
) -> np.ndarray:
    rows = np.flatnonzero(present)
    pos = np.full(len(ids), -1, dtype=np.int64)
    pos[rows] = _lookup(index, ids[rows])
    unknown = pos[rows] < 0
    if unknown.any():
        row = int(rows[np.flatnonzero(unknown)[0]])
        raise ValueError(
            f"table 'events' row {row}: field {field!r}: id {ids[row]} is not in table {table!r}"
        )
    return pos


def _lookup(index: pd.Index, ids: np.ndarray) -> np.ndarray:
    """Position of each id in ``index`` (-1 if absent); a dense table when ids are small."""
    keys = index.to_numpy()
    if len(keys) and keys.min() >= 0 and keys.max() < 4 * len(keys) + 1024:
        table = np.full(int(keys.max()) + 2, -1, dtype=np.int64)
        table[keys] = np.arange(len(keys))
        # Negative and too-large ids land on the last slot, which holds -1.
        return table[np.minimum(np.maximum(ids, -1), len(table) - 1)]
    return index.get_indexer(ids)
