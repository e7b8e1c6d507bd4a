"""Per-user profile features derived from merged ``ProfileStats``, and the numeric matrix API.

Every feature is a vectorised function of the statistics (never of raw events), so a profile
built incrementally equals one built from all events at once. Features that compare a user
with everyone (percentiles, z-scores, a streamer's share of its category) are derived after
merging, from population totals of the same statistics.

Sparse rates are shrunk towards the population rate with ``config.shrinkage`` pseudo-events:
``(k + m * p) / (n + m)``, so a user with two clicks and one coupon claim is not read as a
50 % coupon hunter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from recsys.profiling.config import ProfileConfig
from recsys.profiling.stats import ProfileStats
from recsys.profiling.streamers import streamer_features, trusted_lists

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class Profiles:
    """One row per user (``users``, sorted by user_id) and per (user, streamer) met."""

    users: pd.DataFrame
    streamers: pd.DataFrame
    as_of_ts: int
    categories: tuple[str, ...]
    topics: tuple[str, ...]
    dayparts: tuple[str, ...]


def derive_profiles(stats: ProfileStats, config: ProfileConfig) -> Profiles:
    s = stats.users
    pairs = streamer_features(stats, config)
    out: dict[str, np.ndarray] = {"user_id": s.index.to_numpy(dtype=np.int64)}
    out |= _activity(s, stats.ref_ts)
    out |= _interest(stats, config)
    out |= _price(s, config)
    out |= _sensitivity(s, config)
    out |= _brand(s, config)
    out |= _hours(s, config)
    out |= _topics(s, stats.topics)
    out |= _value(s, stats.ref_ts, config)
    users = pd.DataFrame(out)
    users = users.join(trusted_lists(pairs, users["user_id"]), on="user_id")
    dayparts = tuple(name for name, _, _ in config.dayparts)
    return Profiles(users, pairs, stats.ref_ts, stats.categories, stats.topics, dayparts)


def shrunk_rate(k: np.ndarray, n: np.ndarray, m: float) -> np.ndarray:
    """(k + m p) / (n + m) with p the population rate; p where nobody has evidence."""
    total = n.sum()
    p = k.sum() / total if total > 0 else 0.0
    return (k + m * p) / np.maximum(n + m, 1e-12)


def percentile(x: np.ndarray) -> np.ndarray:
    """Mid-rank percentile in (0, 1); ties share their average rank."""
    if len(x) == 0:
        return np.zeros(0)
    return (rankdata(x, method="average") - 0.5) / len(x)


def _activity(s: pd.DataFrame, ref_ts: int) -> dict[str, np.ndarray]:
    return {
        "n_events": s["n_events"].to_numpy(),
        "n_visits": s["n_enter"].to_numpy(),
        "n_clicks": s["n_click"].to_numpy(),
        "n_purchases": s["n_purchase"].to_numpy(),
        "n_refunds": s["n_refund"].to_numpy(),
        "n_comments": s["n_comment"].to_numpy(),
        "n_coupon_claims": s["n_coupon_claim"].to_numpy(),
        "n_follows": s["n_follow"].to_numpy(),
        "dwell_minutes": s["dwell_s"].to_numpy() / 60.0,
        "recent_activity": s["d_events"].to_numpy(),
        "recency_days": (ref_ts - s["last_ts"].to_numpy()) / SECONDS_PER_DAY,
        "tenure_days": (ref_ts - s["first_ts"].to_numpy()) / SECONDS_PER_DAY,
    }


def _interest(stats: ProfileStats, config: ProfileConfig) -> dict[str, np.ndarray]:
    """Category interest: per streamer log1p(decayed visits) and log1p(decayed clicks) summed
    into the streamer's category, then normalised. The log gives diminishing returns per
    streamer, so repeat visits to one trusted streamer do not read as a passion for its category."""
    p, s = stats.pairs, stats.users
    n_users, n_cat = len(s), len(stats.categories)
    row = s.index.get_indexer(p["user_id"])
    evidence = config.interest_visit_weight * np.log1p(p["d_visits"].to_numpy())
    evidence += config.interest_click_weight * np.log1p(p["d_clicks"].to_numpy())
    key = row * n_cat + p["category"].to_numpy()
    grid = np.bincount(key, weights=evidence, minlength=n_users * n_cat).astype(np.float64)
    grid = grid.reshape(n_users, n_cat)
    total = grid.sum(axis=1, keepdims=True)
    share = np.divide(grid, total, out=np.zeros_like(grid), where=total > 0)
    out = {}
    for i, c in enumerate(stats.categories):
        out[f"interest_{c}"] = share[:, i]
        out[f"engagement_{c}"] = s[f"events_{c}"].to_numpy()
        out[f"purchases_{c}"] = s[f"purchases_{c}"].to_numpy()
    top = np.argmax(grid, axis=1)
    out["top_category_share"] = share[np.arange(n_users), top] if n_users else np.zeros(0)
    return out


def _price(s: pd.DataFrame, config: ProfileConfig) -> dict[str, np.ndarray]:
    """Price level (mean catalogue percentile of paid prices) and purchasing power.

    Power is spend per click against the population's, on a log scale: purchases per click
    rise with what a user can afford, while the prices of what people buy barely differ
    (everyone prefers the cheaper of two products they like). Tiers cut its percentile."""
    n = s["n_purchase"].to_numpy()
    level = np.divide(s["price_pct_sum"].to_numpy(), n, out=np.full(len(n), np.nan), where=n > 0)
    ratio = np.divide(
        s["log_price_ratio_sum"].to_numpy(), n, out=np.full(len(n), np.nan), where=n > 0
    )
    spend, clicks = s["spend_cents"].to_numpy() / 100.0, s["n_click"].to_numpy()
    population = spend.sum() / clicks.sum() if clicks.sum() > 0 and spend.sum() > 0 else 1.0
    m = config.shrinkage
    power = np.log((spend + m * population) / (clicks + m) / population)
    rank = percentile(power)
    lo, hi = config.power_tiers
    tier = np.where(rank < lo, 0.0, np.where(rank >= hi, 2.0, 1.0))
    return {
        "price_level": level,
        "price_ratio": ratio,  # mean log(paid price / category median)
        "power_index": power,
        "power_pct": rank,
        "power_tier": tier,
    }


def _sensitivity(s: pd.DataFrame, config: ProfileConfig) -> dict[str, np.ndarray]:
    """Price sensitivity from coupon claims per click, coupon use per purchase and price
    questions per comment: a weighted mean of their z-scores, reported as a percentile."""
    m, w = config.shrinkage, config.sensitivity
    price_topic = f"topic_{w.price_topic}"
    questions = s[price_topic].to_numpy() if price_topic in s else np.zeros(len(s))
    rates = {
        "coupon_claim_rate": shrunk_rate(
            s["n_coupon_claim"].to_numpy(), s["n_click"].to_numpy(), m
        ),
        "coupon_purchase_share": shrunk_rate(
            s["coupon_purchases"].to_numpy(), s["n_purchase"].to_numpy(), m
        ),
        "price_question_share": shrunk_rate(questions, s["n_comment"].to_numpy(), m),
    }
    weights = {name: getattr(w, name) for name in rates}
    score = sum(weights[k] * _zscore(v) for k, v in rates.items()) / max(
        sum(weights.values()), 1e-12
    )
    evidence = s["n_click"].to_numpy() + s["n_comment"].to_numpy() + s["n_purchase"].to_numpy()
    return rates | {
        "price_sensitivity_score": score,
        "price_sensitivity": percentile(score),
        "price_evidence": evidence,
    }


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std() if len(x) else 0.0
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def _brand(s: pd.DataFrame, config: ProfileConfig) -> dict[str, np.ndarray]:
    """Share of domestic-brand choices (a click counts ``brand_click_weight`` of a purchase)."""
    bw = config.brand_click_weight
    domestic = s["domestic_purchases"].to_numpy() + bw * s["domestic_clicks"].to_numpy()
    imported = s["imported_purchases"].to_numpy() + bw * s["imported_clicks"].to_numpy()
    n = domestic + imported
    share = shrunk_rate(domestic, n, config.shrinkage)
    base = domestic.sum() / n.sum() if n.sum() > 0 else 0.0
    lift = share / base if base > 0 else np.ones_like(share)
    return {"domestic_share": share, "domestic_lift": lift, "brand_evidence": n}


def _hours(s: pd.DataFrame, config: ProfileConfig) -> dict[str, np.ndarray]:
    grid = s[[f"hour_{h:02d}" for h in range(24)]].to_numpy()  # (U, 24)
    total = np.maximum(grid.sum(axis=1), 1.0)
    out = {}
    for name, start, end in config.dayparts:
        hours = np.arange(start, end) if start < end else np.r_[start:24, 0:end]
        out[f"hours_{name}"] = grid[:, hours].sum(axis=1) / total
    out["peak_hour"] = np.argmax(grid, axis=1).astype(np.float64)
    return out


def _topics(s: pd.DataFrame, topics: tuple[str, ...]) -> dict[str, np.ndarray]:
    comments = s["n_comment"].to_numpy()
    out = {}
    for t in topics:
        count = s[f"topic_{t}"].to_numpy()
        out[f"topic_{t}"] = count
        out[f"topic_{t}_share"] = np.divide(
            count, comments, out=np.zeros(len(count)), where=comments > 0
        )
    return out


def _value(s: pd.DataFrame, ref_ts: int, config: ProfileConfig) -> dict[str, np.ndarray]:
    """Recency / frequency / monetary value and refunds."""
    last = s["last_purchase_ts"].to_numpy()
    recency = np.where(last >= 0, (ref_ts - last) / SECONDS_PER_DAY, np.nan)
    monetary = (s["spend_cents"].to_numpy() - s["refund_cents"].to_numpy()) / 100.0
    n = s["n_purchase"].to_numpy()
    return {
        "purchase_recency_days": recency,
        "frequency": n,
        "monetary": monetary,
        "monetary_pct": percentile(monetary),
        "recent_spend": s["d_spend"].to_numpy(),
        "coupon_saved": s["coupon_saved_cents"].to_numpy() / 100.0,
        "refund_rate": shrunk_rate(s["n_refund"].to_numpy(), n, config.shrinkage),
    }


# (feature, transform) of the numeric profile matrix; {category}, {topic} and {daypart} expand.
MATRIX_FEATURES: tuple[tuple[str, str], ...] = (
    ("interest_{category}", "raw"),
    ("n_events", "log1p"),
    ("n_visits", "log1p"),
    ("n_clicks", "log1p"),
    ("n_purchases", "log1p"),
    ("dwell_minutes", "log1p"),
    ("recency_days", "log1p"),
    ("price_level", "fill_half"),
    ("power_index", "raw"),
    ("price_sensitivity", "raw"),
    ("coupon_claim_rate", "raw"),
    ("coupon_purchase_share", "raw"),
    ("price_question_share", "raw"),
    ("refund_rate", "raw"),
    ("domestic_share", "raw"),
    ("hours_{daypart}", "raw"),
    ("topic_{topic}_share", "raw"),
    ("monetary", "log1p"),
    ("n_follows", "log1p"),
    ("top_streamer_share", "raw"),
    ("n_trusted_streamers", "raw"),
)


def profile_matrix(profiles: Profiles) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(user_ids (U,) int64, features (U, F) float32, feature names (F,)), all finite.

    Counts enter as log1p, price level is 0.5 (the median) for users who never bought.
    """
    users = profiles.users
    blocks, names = [], []
    for col, transform in _matrix_columns(profiles):
        x = users[col].to_numpy(dtype=np.float64)
        if transform == "log1p":
            x = np.log1p(np.maximum(x, 0.0))
        elif transform == "fill_half":
            x = np.where(np.isfinite(x), x, 0.5)
        blocks.append(x)
        names.append(col if transform == "raw" else f"{transform}({col})")
    matrix = np.column_stack(blocks).astype(np.float32)  # (U, F)
    finite = np.isfinite(matrix).all(axis=0)
    if not finite.all():
        raise ValueError(
            f"profile feature {names[int(np.flatnonzero(~finite)[0])]!r} is not finite"
        )
    return users["user_id"].to_numpy(dtype=np.int64), matrix, names


def _matrix_columns(profiles: Profiles) -> list[tuple[str, str]]:
    families = {
        "{category}": profiles.categories,
        "{topic}": profiles.topics,
        "{daypart}": profiles.dayparts,
    }
    out = []
    for pattern, transform in MATRIX_FEATURES:
        slot = next((k for k in families if k in pattern), None)
        values = families[slot] if slot else [None]
        out += [(pattern.replace(slot, v) if slot else pattern, transform) for v in values]
    return out
