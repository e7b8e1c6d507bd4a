"""What a session needs to know about the ids its events name: category and price.

Session state never loads tables itself: the caller builds one ``ItemLookup`` from the products
and streamers tables (or from any other source) and hands it to the store. Category codes are
positions in ``categories``; an id the lookup does not know gets category ``UNKNOWN`` and price
NaN, so a new product still counts as itself but moves no category affinity.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from recsys.data.positions import IdPositions

UNKNOWN = -1


def _require(frame: pd.DataFrame, table: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"table {table!r}: missing columns {missing} needed by ItemLookup")


def _unique_ids(ids: np.ndarray, table: str, field: str) -> pd.Index:
    index = pd.Index(ids)
    if not index.is_unique:
        dup = index[index.duplicated()][0]
        raise ValueError(f"table {table!r}: field {field!r} repeats id {dup}")
    return index


class ItemLookup:
    """Product id -> (category code, price); streamer id -> category code.

    Scalar look-ups (one event at a time) go through dicts, batch look-ups (many candidates)
    through ``pd.Index.get_indexer``; both read the same arrays.
    """

    __slots__ = (
        "categories",
        "_product_index",
        "_product_positions",
        "_product_category",
        "_product_price",
        "_streamer_index",
        "_streamer_positions",
        "_streamer_category",
        "_product",
        "_streamer",
    )

    def __init__(
        self,
        *,
        categories: tuple[str, ...],
        product_ids: np.ndarray,
        product_category: np.ndarray,
        product_price: np.ndarray,
        streamer_ids: np.ndarray,
        streamer_category: np.ndarray,
    ) -> None:
        self.categories = tuple(categories)
        self._product_index = _unique_ids(np.asarray(product_ids, np.int64), "products", "id")
        self._product_category = np.asarray(product_category, dtype=np.int64)
        self._product_price = np.asarray(product_price, dtype=np.float64)
        self._streamer_index = _unique_ids(np.asarray(streamer_ids, np.int64), "streamers", "id")
        self._streamer_category = np.asarray(streamer_category, dtype=np.int64)
        self._product_positions = IdPositions(self._product_index.to_numpy())
        self._streamer_positions = IdPositions(self._streamer_index.to_numpy())
        if not len(self._product_index) == len(self._product_category) == len(self._product_price):
            raise ValueError("ItemLookup: product ids, categories and prices differ in length")
        if len(self._streamer_index) != len(self._streamer_category):
            raise ValueError("ItemLookup: streamer ids and categories differ in length")
        self._product = dict(
            zip(
                self._product_index.tolist(),
                zip(self._product_category.tolist(), self._product_price.tolist(), strict=True),
                strict=True,
            )
        )
        self._streamer = dict(
            zip(self._streamer_index.tolist(), self._streamer_category.tolist(), strict=True)
        )

    @classmethod
    def from_tables(cls, products: pd.DataFrame, streamers: pd.DataFrame) -> ItemLookup:
        """Category codes follow the sorted category names of both tables."""
        _require(products, "products", ("product_id", "category", "price"))
        _require(streamers, "streamers", ("streamer_id", "category"))
        names = tuple(
            sorted(set(products["category"].astype(str)) | set(streamers["category"].astype(str)))
        )
        code = {name: i for i, name in enumerate(names)}
        return cls(
            categories=names,
            product_ids=products["product_id"].to_numpy(np.int64),
            product_category=products["category"].astype(str).map(code).to_numpy(np.int64),
            product_price=products["price"].to_numpy(np.float64),
            streamer_ids=streamers["streamer_id"].to_numpy(np.int64),
            streamer_category=streamers["category"].astype(str).map(code).to_numpy(np.int64),
        )

    def product(self, product_id: int) -> tuple[int, float]:
        """(category code, price) of one product; (UNKNOWN, NaN) when unknown."""
        return self._product.get(product_id, (UNKNOWN, math.nan))

    def streamer(self, streamer_id: int) -> int:
        return self._streamer.get(streamer_id, UNKNOWN)

    def knows_product(self, product_id: int) -> bool:
        return product_id in self._product

    def knows_streamer(self, streamer_id: int) -> bool:
        return streamer_id in self._streamer

    def products(self, product_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(categories, prices) of many products; UNKNOWN / NaN where unknown."""
        pos = self._product_positions.of(product_ids)
        if len(self._product_category) == 0:
            return np.full(len(pos), UNKNOWN, np.int64), np.full(len(pos), np.nan)
        known = pos >= 0
        category = np.where(known, self._product_category[np.maximum(pos, 0)], UNKNOWN)
        return category, np.where(known, self._product_price[np.maximum(pos, 0)], np.nan)

    def streamers(self, streamer_ids: np.ndarray) -> np.ndarray:
        pos = self._streamer_positions.of(streamer_ids)
        if len(self._streamer_category) == 0:
            return np.full(len(pos), UNKNOWN, np.int64)
        return np.where(pos >= 0, self._streamer_category[np.maximum(pos, 0)], UNKNOWN)
