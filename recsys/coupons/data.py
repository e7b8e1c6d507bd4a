"""What the uplift models read and learn from: viewer features and each viewer-day's outcome.

Features are the viewer's profile (``recsys.profiling``) built from the events before the
grants start: price sensitivity and its evidence, purchasing power, activity, coupon habits,
value. A viewer with no events keeps a row: zeros and ``has_history`` 0 (the rules read them as
a mid-tier, median-sensitivity viewer with no evidence), so nobody is dropped.

Outcomes per viewer and day come from the market's logs: GMV of the cards' purchases at list
price, the face value of the granted coupons redeemed (the cost), and orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.profiling import Profiler, profile_matrix
from recsys.profiling.catalog import Catalog

FEATURES = (
    "price_sensitivity",
    "power_index",
    "log1p(n_clicks)",
    "log1p(n_purchases)",
    "log1p(n_visits)",
    "log1p(n_events)",
    "coupon_claim_rate",
    "coupon_purchase_share",
    "price_question_share",
    "fill_half(price_level)",
    "log1p(monetary)",
    "log1p(recency_days)",
    "top_streamer_share",
)
# Profile columns the rule baseline reads (value tier, price sensitivity, its evidence).
RULE_COLUMNS = ("power_tier", "monetary_pct", "frequency", "price_sensitivity", "price_evidence")
OUTCOMES = ("gmv", "cost", "orders")


@dataclass(frozen=True)
class Features:
    user_id: np.ndarray  # (U,) int64, sorted
    x: np.ndarray  # (U, F) float64, finite
    names: tuple[str, ...]
    profile: pd.DataFrame  # RULE_COLUMNS indexed by user_id


def user_features(
    events: pd.DataFrame, products: pd.DataFrame, streamers: pd.DataFrame, user_ids: np.ndarray
) -> Features:
    """Profile features of ``user_ids`` from their ``events`` (the days before the grants)."""
    user_ids = np.sort(np.asarray(user_ids, dtype=np.int64))
    profiler = Profiler(catalog=Catalog.from_tables(products, streamers))
    profiles = profiler.build(events).profiles
    ids, matrix, names = profile_matrix(profiles)
    missing = [f for f in FEATURES if f not in names]
    if missing:
        raise ValueError(f"coupon features: the profile has no {missing}")
    cols = [names.index(f) for f in FEATURES]
    frame = pd.DataFrame(matrix[:, cols].astype(np.float64), index=ids).reindex(user_ids)
    seen = frame.notna().all(axis=1).to_numpy()
    x = np.column_stack([np.nan_to_num(frame.to_numpy(), nan=0.0), seen.astype(np.float64)])
    profile = profiles.users.set_index("user_id")[list(RULE_COLUMNS)].reindex(user_ids)
    profile = profile.fillna({"power_tier": 1.0, "monetary_pct": 0.0, "frequency": 0.0,
                              "price_sensitivity": 0.5, "price_evidence": 0.0})  # fmt: skip
    return Features(user_ids, x, (*FEATURES, "has_history"), profile)


def day_outcomes(logs: dict[str, pd.DataFrame], user_ids: np.ndarray) -> pd.DataFrame:
    """Per viewer of ``user_ids`` (0 for one without cards): GMV at list price of the cards'
    purchases, the face value of granted coupons redeemed, and orders."""
    cards = logs["impressions"].merge(logs["truth/impressions"][["request_id", "position",
                                                                 "price"]],
                                      on=["request_id", "position"], how="left")  # fmt: skip
    bought = cards["purchase"].to_numpy(bool)
    per = pd.DataFrame({
        "user_id": cards["user_id"].to_numpy(np.int64),
        "gmv": np.where(bought, cards["price"].to_numpy(np.float64), 0.0),
        "cost": np.where(bought & (cards["grant_id"].to_numpy(np.int64) >= 0),
                         cards["coupon_value"].to_numpy(np.float64), 0.0),
        "orders": bought.astype(np.float64),
    }).groupby("user_id")[list(OUTCOMES)].sum()  # fmt: skip
    return per.reindex(np.asarray(user_ids, dtype=np.int64), fill_value=0.0)
