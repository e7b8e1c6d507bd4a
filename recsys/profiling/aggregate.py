"""One batch of events -> ``ProfileStats``, vectorised: bincounts over user codes, no event loop.

Every event gets a dense user code and, where it names a product or streamer, a category:
the product's category for shopping events, the streamer's for room events. Purchases also get
the paid price's percentile among the category's catalogue prices and its log ratio to the
category's median price, from the products table. Comments get topic flags from keyword rules
matched once per distinct text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.schema import EVENT_REQUIREMENTS, EVENT_TYPES
from recsys.profiling.catalog import Catalog
from recsys.profiling.config import ProfileConfig
from recsys.profiling.stats import ProfileStats

TYPE = {name: i for i, name in enumerate(EVENT_TYPES)}
EVENT_COLUMNS = ("ts", "user_id", "event_type", "streamer_id", "product_id", "dwell_s", "amount")
EVENT_COLUMNS += ("coupon_value", "comment")


class Batch:
    """The columns of one event batch as numpy arrays, with codes resolved and checked."""

    def __init__(self, events: pd.DataFrame, catalog: Catalog) -> None:
        missing = [c for c in EVENT_COLUMNS if c not in events.columns]
        if missing:
            raise ValueError(f"table 'events': missing columns {missing}")
        self.ts = events["ts"].to_numpy(dtype=np.int64)
        self.user_ids, self.user = _user_codes(events["user_id"])
        self.type = _type_codes(events["event_type"])
        self._masks: dict[str, np.ndarray] = {}
        self.has_streamer = events["streamer_id"].notna().to_numpy()
        self.has_product = events["product_id"].notna().to_numpy()
        self.streamer = events["streamer_id"].to_numpy(dtype=np.int64, na_value=0)
        self.product = events["product_id"].to_numpy(dtype=np.int64, na_value=0)
        # Missing money and dwell read as 0: required fields were checked per event type.
        self.dwell0 = events["dwell_s"].to_numpy(dtype=np.float64, na_value=0.0)
        self.amount0 = events["amount"].to_numpy(dtype=np.float64, na_value=0.0)
        self.coupon0 = events["coupon_value"].to_numpy(dtype=np.float64, na_value=0.0)
        # Money is summed in whole cents, so sums are exact and merge in any order.
        self.amount_cents, self.coupon_cents = _cents(self.amount0), _cents(self.coupon0)
        _check_required(events, self.type)
        self.product_pos = catalog.product_positions(self.product, self.has_product)
        self.streamer_pos = catalog.streamer_positions(self.streamer, self.has_streamer)
        self.category = _event_categories(self, catalog)
        self.comment = events["comment"]

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def is_type(self, name: str) -> np.ndarray:
        if name not in self._masks:
            self._masks[name] = self.type == TYPE[name]
        return self._masks[name]


def _user_codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct user ids, per-event code into them)."""
    codes, uniques = pd.factorize(column.to_numpy(dtype=np.int64))
    order = np.argsort(uniques, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return uniques[order], rank[codes]


def _cents(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values))
    nonzero = np.flatnonzero(values)
    out[nonzero] = np.round(values[nonzero] * 100.0)
    return out


def _event_categories(batch: Batch, catalog: Catalog) -> np.ndarray:
    """The product's category for shopping events, else the streamer's, else -1."""
    out = np.full(len(batch.ts), -1, dtype=np.int64)
    rows = np.flatnonzero(batch.streamer_pos >= 0)
    out[rows] = catalog.streamer_category[batch.streamer_pos[rows]]
    rows = np.flatnonzero(batch.product_pos >= 0)
    out[rows] = catalog.product_category[batch.product_pos[rows]]
    return out


def _type_codes(column: pd.Series) -> np.ndarray:
    codes, uniques = pd.factorize(column)
    known = np.array([TYPE.get(str(u), -1) for u in uniques], dtype=np.int8)
    if (codes < 0).any() or (known < 0).any():
        bad = np.flatnonzero((codes < 0) | (known[np.maximum(codes, 0)] < 0))[0]
        raise ValueError(
            f"table 'events' row {bad}: field 'event_type': unknown value "
            f"{column.iloc[bad]!r}; expected one of {list(EVENT_TYPES)}"
        )
    return known[codes]


def _check_required(events: pd.DataFrame, types: np.ndarray) -> None:
    """Fields an event type must carry (schema.EVENT_REQUIREMENTS) must not be missing."""
    for name, fields in EVENT_REQUIREMENTS.items():
        of_type = types == TYPE[name]
        for field in fields:
            bad = of_type & events[field].isna().to_numpy()
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"table 'events' row {row}: field {field!r} is missing on a {name!r} event"
                )


def batch_stats(
    events: pd.DataFrame,
    catalog: Catalog,
    config: ProfileConfig,
    ref_ts: int | None = None,
) -> ProfileStats:
    """Sufficient statistics of ``events``; decayed sums refer to ``ref_ts`` (default: the last
    event's time)."""
    batch = Batch(events, catalog)
    if ref_ts is None:
        ref_ts = int(batch.ts.max()) if len(batch) else 0
    elif len(batch) and batch.ts.max() > ref_ts:
        raise ValueError(f"events run past the reference time {ref_ts}: last ts {batch.ts.max()}")
    weight = np.exp2(-(ref_ts - batch.ts) / config.half_life_s)
    users = _user_table(batch, catalog, config, weight)
    pairs = _pair_table(batch, catalog, weight)
    return ProfileStats(
        users=users,
        pairs=pairs,
        ref_ts=int(ref_ts),
        half_life_s=config.half_life_s,
        categories=catalog.categories,
        topics=config.topic_names,
    )


def _user_table(
    batch: Batch, catalog: Catalog, config: ProfileConfig, weight: np.ndarray
) -> pd.DataFrame:
    n = batch.n_users
    cols: dict[str, np.ndarray] = {}

    def total(mask: np.ndarray | None = None, values: np.ndarray | None = None) -> np.ndarray:
        user = batch.user if mask is None else batch.user[mask]
        w = values if mask is None or values is None else values[mask]
        return np.bincount(user, weights=w, minlength=n).astype(np.float64)

    cols["n_events"] = total()
    by_type = _type_counts(batch.type, batch.user, n)  # (n_types, U) in one pass
    for name in EVENT_TYPES:
        cols[f"n_{name}"] = by_type[TYPE[name]]
    cols["dwell_s"] = total(batch.is_type("leave"), batch.dwell0)
    cols |= _money_columns(batch, catalog, total)
    cols |= _per_category(batch, catalog.categories, n)
    cols |= _hours(batch, config.utc_offset_hours, n)
    cols |= _topic_counts(batch, config, n)
    cols["d_events"] = total(None, weight)
    cols["d_spend"] = total(batch.is_type("purchase"), batch.amount0 * weight)
    cols["first_ts"] = _extreme(batch.user, batch.ts, n, np.minimum, np.iinfo(np.int64).max)
    cols["last_ts"] = _extreme(batch.user, batch.ts, n, np.maximum, -1)
    bought = batch.is_type("purchase")
    cols["last_purchase_ts"] = _extreme(batch.user[bought], batch.ts[bought], n, np.maximum, -1)
    frame = pd.DataFrame(cols, index=pd.Index(batch.user_ids, name="user_id"))
    return frame


def _money_columns(batch: Batch, catalog: Catalog, total) -> dict[str, np.ndarray]:
    bought, refund = batch.is_type("purchase"), batch.is_type("refund")
    clicked = batch.is_type("click")
    rows = np.flatnonzero(bought)
    coupon = batch.coupon0[rows]
    full_price = batch.amount0[rows] + coupon  # the price before the coupon came off
    pct, log_ratio = catalog.price_position(batch.category[rows], full_price)
    imported = np.zeros(len(batch), dtype=bool)
    has = batch.has_product
    imported[has] = catalog.product_imported[batch.product_pos[has]]
    domestic = has & ~imported
    return {
        "spend_cents": total(bought, batch.amount_cents),
        "refund_cents": total(refund, batch.amount_cents),
        "coupon_purchases": total(bought & (batch.coupon0 > 0)),
        "coupon_saved_cents": total(bought, batch.coupon_cents),
        "claim_value_cents": total(batch.is_type("coupon_claim"), batch.coupon_cents),
        "price_pct_sum": _sum_rows(batch, rows, pct),
        "log_price_ratio_sum": _sum_rows(batch, rows, log_ratio),
        "domestic_purchases": total(bought & domestic),
        "imported_purchases": total(bought & imported),
        "domestic_clicks": total(clicked & domestic),
        "imported_clicks": total(clicked & imported),
    }


def _sum_rows(batch: Batch, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.bincount(batch.user[rows], weights=values, minlength=batch.n_users)


def _per_category(batch: Batch, categories: tuple[str, ...], n: int) -> dict[str, np.ndarray]:
    """(U, C) counts of events, purchases and spend per category, as named columns."""
    n_cat = len(categories)
    known = batch.category >= 0
    bought = known & batch.is_type("purchase")

    def grid(mask: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        key = batch.user[mask] * n_cat + batch.category[mask]
        w = None if values is None else values[mask]
        return np.bincount(key, weights=w, minlength=n * n_cat).reshape(n, n_cat)

    events, purchases = grid(known), grid(bought)
    spend = grid(bought, batch.amount_cents)
    out = {}
    for i, c in enumerate(categories):
        out[f"events_{c}"] = events[:, i].astype(np.float64)
        out[f"purchases_{c}"] = purchases[:, i].astype(np.float64)
        out[f"spend_cents_{c}"] = spend[:, i]
    return out


def _hours(batch: Batch, utc_offset_hours: int, n: int) -> dict[str, np.ndarray]:
    hour = ((batch.ts + utc_offset_hours * 3600) // 3600) % 24
    grid = np.bincount(batch.user * 24 + hour, minlength=n * 24).reshape(n, 24)
    return {f"hour_{h:02d}": grid[:, h].astype(np.float64) for h in range(24)}


def _topic_counts(batch: Batch, config: ProfileConfig, n: int) -> dict[str, np.ndarray]:
    """Comment counts per topic; keywords are matched once per distinct comment text."""
    rows = np.flatnonzero(batch.is_type("comment"))
    codes, uniques = pd.factorize(batch.comment.take(rows))
    out = {}
    for topic in config.topics:
        hit = np.array([any(k in str(u) for k in topic.keywords) for u in uniques], dtype=bool)
        users = batch.user[rows][hit[codes]] if len(uniques) else np.empty(0, dtype=np.int64)
        out[f"topic_{topic.name}"] = np.bincount(users, minlength=n).astype(np.float64)
    return out


def _extreme(user: np.ndarray, ts: np.ndarray, n: int, ufunc, fill: int) -> np.ndarray:
    out = np.full(n, fill, dtype=np.int64)
    ufunc.at(out, user, ts)
    return out


def _type_counts(kind: np.ndarray, row: np.ndarray, n: int) -> np.ndarray:
    """(n_types, n) float64 count of each event type per row code."""
    key = kind.astype(np.int64) * n + row
    counts = np.bincount(key, minlength=len(EVENT_TYPES) * n)
    return counts.reshape(len(EVENT_TYPES), n).astype(np.float64)


PAIR_TYPES = ("enter", "leave", "click", "purchase", "follow", "comment")


def _pair_table(batch: Batch, catalog: Catalog, weight: np.ndarray) -> pd.DataFrame:
    """Per (user, streamer) visits, clicks, dwell, purchases, spend, follows and comments.

    The pair's category is the streamer's own (``streamers.category``).
    """
    wanted = np.zeros(len(EVENT_TYPES), dtype=bool)
    wanted[[TYPE[t] for t in PAIR_TYPES]] = True
    idx = np.flatnonzero(batch.has_streamer & wanted[batch.type])
    n_streamers = len(catalog.streamer_category)
    codes, uniques = pd.factorize(batch.user[idx] * n_streamers + batch.streamer_pos[idx])
    n = len(uniques)
    kind = batch.type[idx]
    counts = _type_counts(kind, codes, n)

    def total(name: str, values: np.ndarray) -> np.ndarray:
        mask = kind == TYPE[name]
        return np.bincount(codes[mask], weights=values[idx[mask]], minlength=n)

    user, pos = uniques // n_streamers, uniques % n_streamers
    streamer_id = catalog.streamer_index.to_numpy()[pos]
    columns = {
        "user_id": batch.user_ids[user],
        "streamer_id": streamer_id,
        "category": catalog.streamer_category[pos],
        "visits": counts[TYPE["enter"]],
        "d_visits": total("enter", weight),
        "clicks": counts[TYPE["click"]],
        "d_clicks": total("click", weight),
        "dwell_s": total("leave", batch.dwell0),
        "purchases": counts[TYPE["purchase"]],
        "spend_cents": total("purchase", batch.amount_cents),
        "follows": counts[TYPE["follow"]],
        "comments": counts[TYPE["comment"]],
        "last_ts": _extreme(codes, batch.ts[idx], n, np.maximum, -1),
    }
    order = np.lexsort((streamer_id, user))  # user codes follow sorted user ids
    return pd.DataFrame({name: col[order] for name, col in columns.items()})
