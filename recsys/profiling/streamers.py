"""Per (user, streamer) features and loyalty: who keeps coming back to whom.

A trusted streamer shows up as repeat visits that take a large share of the user's watching,
more than the streamer's popularity in its category explains, with long dwell, a follow and
purchases. ``loyalty`` is the sigmoid of a linear score over exactly those quantities (weights
in ``features.yaml``), so each loyal-streamer tag can say which of them made it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.profiling.config import ProfileConfig
from recsys.profiling.stats import ProfileStats


def streamer_features(stats: ProfileStats, config: ProfileConfig) -> pd.DataFrame:
    """One row per (user, streamer) pair of the stats, sorted by (user_id, streamer_id)."""
    p = stats.pairs
    names = np.asarray(stats.categories, dtype=object)[p["category"].to_numpy()]
    frame = pd.DataFrame(
        {
            "user_id": p["user_id"].to_numpy(),
            "streamer_id": p["streamer_id"].to_numpy(),
            "category": pd.Series(names, dtype="str").to_numpy(),
            "visits": p["visits"].to_numpy(),
            "dwell_minutes": p["dwell_s"].to_numpy() / 60.0,
            "clicks": p["clicks"].to_numpy(),
            "purchases": p["purchases"].to_numpy(),
            "spend": p["spend_cents"].to_numpy() / 100.0,
            "follows": p["follows"].to_numpy(),
            "comments": p["comments"].to_numpy(),
        }
        | _visit_shares(p, len(stats.categories))
        | {"last_ts": p["last_ts"].to_numpy()}
    )
    frame["loyalty"] = loyalty(frame, config)
    frame["trusted"] = (frame["loyalty"] >= config.trusted_min_loyalty) & (
        frame["visits"] >= config.trusted_min_visits
    )
    return frame


def _visit_shares(p: pd.DataFrame, n_categories: int) -> dict[str, np.ndarray]:
    """The streamer's share of the user's visits, of the user's visits to its category, and
    ``lift``: that category share over the streamer's share of everyone's category visits."""
    visits, user, category = (p[c].to_numpy() for c in ("visits", "user_id", "category"))
    category_visits = _group_total(user * (n_categories + 1) + category, visits)
    category_share = _ratio(visits, category_visits)
    popularity = _ratio(
        _group_total(p["streamer_id"].to_numpy(), visits), _group_total(category, visits)
    )
    return {
        "visit_share": _ratio(visits, _group_total(user, visits)),
        "category_share": category_share,
        "lift": _ratio(category_share, popularity),
    }


def loyalty(pairs: pd.DataFrame, config: ProfileConfig) -> np.ndarray:
    """sigmoid(w . [log1p visits, visit share, log lift, log1p dwell, follows, log1p purchases])."""
    w = config.loyalty
    score = (
        w.intercept
        + w.log_visits * np.log1p(pairs["visits"].to_numpy())
        + w.visit_share * pairs["visit_share"].to_numpy()
        + w.log_lift * np.log(np.maximum(pairs["lift"].to_numpy(), 1e-6))
        + w.log_dwell_minutes * np.log1p(pairs["dwell_minutes"].to_numpy())
        + w.follows * np.minimum(pairs["follows"].to_numpy(), 1.0)
        + w.log_purchases * np.log1p(pairs["purchases"].to_numpy())
    )
    return 1.0 / (1.0 + np.exp(-score))


def trusted_lists(pairs: pd.DataFrame, user_ids: pd.Series) -> pd.DataFrame:
    """Per user: trusted streamers (most loyal first), their loyalty, count, top visit share.

    Indexed by user_id over ``user_ids``; users without a trusted streamer get empty lists.
    """
    users = pd.Index(user_ids.to_numpy(dtype=np.int64), name="user_id")
    row = users.get_indexer(pairs["user_id"].to_numpy())
    top_share = np.zeros(len(users))
    np.maximum.at(top_share, row, pairs["visit_share"].to_numpy())
    trusted = pairs[pairs["trusted"].to_numpy()]
    order = np.lexsort(
        (
            trusted["streamer_id"].to_numpy(),
            -trusted["loyalty"].to_numpy(),
            row[pairs["trusted"].to_numpy()],
        )
    )
    trusted_rows = row[pairs["trusted"].to_numpy()][order]
    counts = np.bincount(trusted_rows, minlength=len(users))
    bounds = np.cumsum(counts)[:-1]
    ids = np.split(trusted["streamer_id"].to_numpy(dtype=np.int64)[order], bounds)
    scores = np.split(trusted["loyalty"].to_numpy()[order], bounds)
    return pd.DataFrame(
        {
            "n_trusted_streamers": counts.astype(np.float64),
            "top_streamer_share": top_share,
            "trusted_streamers": pd.Series(ids, dtype=object).to_numpy(),
            "trusted_loyalty": pd.Series(scores, dtype=object).to_numpy(),
        },
        index=users,
    )


def _group_total(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For every row, the sum of ``values`` over rows with the same key."""
    codes, uniques = pd.factorize(keys)
    return np.bincount(codes, weights=values, minlength=len(uniques))[codes]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)
