"""The purchase model the simulator uses, and the planted ground truth written to ``truth/``.

``purchase_probability`` is the exact function behind every simulated purchase decision, so
coupon work can compute the true uplift of any (user, product, coupon) from the truth tables
(interest, trust, purchasing power, price sensitivity, brand preference, attributes) and the
product's price, brand origin and ``suits`` attribute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.schema import Column, TableSchema
from recsys.data.tables import write_table
from recsys.simulation import catalog as cat
from recsys.simulation.schedule import Schedule
from recsys.simulation.world import World

# Logit of buying a product after clicking it (see ``purchase_probability``).
BASE = -5.0
W_INTEREST = 2.5
W_TRUST = 1.5
W_BRAND = 1.0
W_ATTRIBUTE = 0.6
W_PRICE = 0.9
W_COUPON_SALIENCE = 0.5
W_COUPON_DEPTH = 6.0
CLAIM_BASE, CLAIM_SENSITIVE = 0.15, 0.8

INTEREST_TAG_THRESHOLD = 0.15
SENSITIVE_TAG_THRESHOLD = 0.65
BIG_SPENDER_POWER = 300.0
DOMESTIC_TAG, IMPORTED_TAG = 0.75, 0.35


def purchase_probability(
    interest,
    trust,
    price,
    purchasing_power,
    price_sensitivity,
    coupon_value=0.0,
    brand_match=0.5,
    attr_match=False,
) -> np.ndarray:
    """P(buy | the user clicked the product), broadcasting over array arguments.

    logit = BASE + W_INTEREST * interest + W_TRUST * trust + W_BRAND * (brand_match - 0.5)
            + W_ATTRIBUTE * attr_match - W_PRICE * log(price / purchasing_power)
            + [coupon > 0] * price_sensitivity * (W_COUPON_SALIENCE
                                                  + W_COUPON_DEPTH * min(coupon / price, 1))

    ``interest`` is the user's weight on the product's category, ``trust`` their trust in the
    presenting streamer (0 if none), ``brand_match`` their preference for the product's origin
    (``brand_pref_domestic`` for a domestic product, one minus it for an imported one) and
    ``attr_match`` whether the product suits the user's body or skin type. The coupon only
    enters through price sensitivity, so insensitive users hardly respond to it.
    """
    price = np.asarray(price, dtype=float)
    coupon = np.asarray(coupon_value, dtype=float)
    depth = np.minimum(coupon / price, 1.0)
    coupon_term = np.where(coupon > 0, W_COUPON_SALIENCE + W_COUPON_DEPTH * depth, 0.0)
    logit = (
        BASE
        + W_INTEREST * np.asarray(interest, dtype=float)
        + W_TRUST * np.asarray(trust, dtype=float)
        + W_BRAND * (np.asarray(brand_match, dtype=float) - 0.5)
        + W_ATTRIBUTE * np.asarray(attr_match, dtype=float)
        - W_PRICE * np.log(price / np.asarray(purchasing_power, dtype=float))
        + np.asarray(price_sensitivity, dtype=float) * coupon_term
    )
    return 1.0 / (1.0 + np.exp(-logit))


def claim_probability(price_sensitivity) -> np.ndarray:
    """P(claim a coupon dropped on a product the user clicked)."""
    return CLAIM_BASE + CLAIM_SENSITIVE * np.asarray(price_sensitivity, dtype=float)


def reference_prices(world: World) -> np.ndarray:
    """(U,) median list price of the products in each user's top-interest category.

    Falls back to the median of all prices for a category without products.
    """
    n_cat = len(world.config.categories)
    prices = world.products.price
    medians = np.array(
        [
            np.median(prices[world.products.category == c])
            if np.any(world.products.category == c)
            else np.median(prices)
            for c in range(n_cat)
        ]
    )
    return medians[world.users.interest.argmax(axis=1)]


def coupon_effect(world: World) -> pd.DataFrame:
    """True uplift per (user, coupon value) on the user's reference product.

    Reference product: top-interest category at its median price (``reference_prices``),
    presented by a streamer the user does not trust, neutral brand, no attribute match.
    ``droppable`` says whether the simulator ever drops that coupon on such a price
    (value at most half the price).
    """
    users = world.users
    values = np.asarray(world.config.coupon_values, dtype=float)
    n_users, n_values = len(users), len(values)
    ref = np.repeat(reference_prices(world), n_values)
    coupon = np.tile(values, n_users)
    top = np.repeat(users.interest.max(axis=1), n_values)
    args = dict(
        interest=top,
        trust=0.0,
        price=ref,
        purchasing_power=np.repeat(users.power, n_values),
        price_sensitivity=np.repeat(users.sensitivity, n_values),
    )
    without = purchase_probability(**args, coupon_value=0.0)
    with_coupon = purchase_probability(**args, coupon_value=coupon)
    return pd.DataFrame(
        {
            "user_id": np.repeat(users.pseudonym, n_values),
            "coupon_value": coupon,
            "reference_price": ref,
            "interest": top,
            "droppable": coupon <= 0.5 * ref,
            "p_purchase_without": without,
            "p_purchase_with": with_coupon,
            "uplift": with_coupon - without,
        }
    )


def _user_tags(world: World) -> np.ndarray:
    users, names = world.users, np.asarray(world.config.categories, dtype=object)
    tags = np.full(len(users), "", dtype=object)
    for c in range(len(names)):
        tags += np.where(
            users.interest[:, c] >= INTEREST_TAG_THRESHOLD, f"interest:{names[c]} ", ""
        )
    tags += np.where(
        users.body > 0, "body:" + np.asarray(cat.BODY_TYPES, dtype=object)[users.body] + " ", ""
    )
    tags += np.where(
        users.skin > 0, "skin:" + np.asarray(cat.SKIN_TYPES, dtype=object)[users.skin] + " ", ""
    )
    tags += np.where(users.sensitivity >= SENSITIVE_TAG_THRESHOLD, "price_sensitive ", "")
    tags += np.where(users.power >= BIG_SPENDER_POWER, "big_spender ", "")
    tags += np.where(users.domestic >= DOMESTIC_TAG, "prefers_domestic ", "")
    tags += np.where(users.domestic <= IMPORTED_TAG, "prefers_imported ", "")
    tags += "hours:" + np.asarray(cat.HOUR_STYLES, dtype=object)[users.hour_style]
    return tags


def users_truth(world: World) -> pd.DataFrame:
    users, names = world.users, np.asarray(world.config.categories, dtype=object)
    ranked = np.argsort(-users.interest, axis=1, kind="stable")[:, :3]
    frame = {"user_id": users.pseudonym}
    frame |= {f"interest_{c}": users.interest[:, i] for i, c in enumerate(names)}
    frame |= {
        "top_interests": names[ranked[:, 0]]
        + " "
        + names[ranked[:, 1]]
        + " "
        + names[ranked[:, 2]],
        "purchasing_power": users.power,
        "price_sensitivity": users.sensitivity,
        "brand_pref_domestic": users.domestic,
        "body_type": np.asarray(cat.BODY_TYPES, dtype=object)[users.body],
        "skin_type": np.asarray(cat.SKIN_TYPES, dtype=object)[users.skin],
        "activity": users.activity,
        "hour_style": np.asarray(cat.HOUR_STYLES, dtype=object)[users.hour_style],
        "tags": _user_tags(world),
    }
    return pd.DataFrame(frame)


def truth_tables(world: World, schedule: Schedule) -> dict[str, pd.DataFrame]:
    streamers, products = world.streamers, world.products
    names = np.asarray(world.config.categories, dtype=object)
    kinds = [cat.CATEGORIES[c].attribute for c in world.config.categories]
    suits = np.array(
        [
            cat.ATTRIBUTE_VALUES[kinds[c]][a] if a else None
            for c, a in zip(products.category, products.attr, strict=True)
        ],
        dtype=object,
    )
    coupon = schedule.seg_coupon > 0
    return {
        "users": users_truth(world),
        "trusted_streamers": pd.DataFrame(
            {
                "user_id": world.users.pseudonym[world.trust.user],
                "streamer_id": world.trust.streamer,
                "trust": world.trust.value,
            }
        ),
        "coupon_effect": coupon_effect(world),
        "streamers": pd.DataFrame(
            {
                "streamer_id": np.arange(len(streamers.kol)),
                "category": names[streamers.category],
                "kol_strength": streamers.kol,
                "price_tier": streamers.tier,
            }
        ),
        "products": pd.DataFrame(
            {
                "product_id": np.arange(len(products.price)),
                "price_tier": products.tier,
                "suits": suits,
            }
        ),
        "coupon_drops": pd.DataFrame(
            {
                "session_id": schedule.seg_session[coupon],
                "product_id": schedule.seg_product[coupon],
                "start_ts": schedule.seg_start[coupon],
                "end_ts": schedule.seg_end[coupon],
                "coupon_value": schedule.seg_coupon[coupon],
            }
        ),
    }


def _kind(dtype) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    return "float" if pd.api.types.is_float_dtype(dtype) else "str"


def write_truth(tables: dict[str, pd.DataFrame], out_dir: Path) -> dict[str, int]:
    """Write each truth table with a schema inferred from its columns; returns row counts."""
    for name, df in tables.items():
        columns = tuple(
            Column(c, _kind(df[c].dtype), nullable=bool(df[c].isna().any())) for c in df.columns
        )
        write_table(df, out_dir / f"{name}.parquet", TableSchema(f"truth/{name}", columns))
    return {name: len(df) for name, df in tables.items()}


def read_coupon_drops(folder: str | Path) -> pd.DataFrame | None:
    """The platform's coupon drop schedule written with a world (None when the folder has
    none, e.g. a world from elsewhere)."""
    path = Path(folder) / "truth" / "coupon_drops.parquet"
    return pd.read_parquet(path) if path.is_file() else None
