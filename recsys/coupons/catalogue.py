"""The coupon catalogue from config, and which coupon of each tier a viewer could get today.

A tier is configured as a mapping (``recsys/conf/coupons.yaml``: ``name``, ``face_value``,
``threshold``, ``scope``, ``validity_s``); its cost is what is redeemed (the face value of a
coupon used at purchase), never what is granted. ``load_catalogue`` refuses a bad tier naming
its position and field (a threshold not above its face value, an unknown scope ...).

``Targets`` says, per viewer and tier, what a grant would be good for: nothing for an order
coupon, the viewer's most visited room for a room coupon (if that streamer is live today), the
product they last clicked or carted without buying for a product coupon (if it is on a live
shelf today and worth more than the coupon). A tier without a target is not offered to that
viewer, and says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.market.coupons import CouponCatalogue, CouponTier

TIER_FIELDS = ("name", "face_value", "threshold", "scope", "validity_s")
NO_TARGET = -1


def load_catalogue(tiers: Sequence[Mapping], source: str = "coupons.tiers") -> CouponCatalogue:
    """The catalogue of configured tiers; a bad tier raises naming ``source[i]`` and the field."""
    if not tiers:
        raise ValueError(f"{source}: no tiers configured")
    out = []
    for i, raw in enumerate(tiers):
        unknown = sorted(set(raw) - set(TIER_FIELDS))
        if unknown:
            raise ValueError(f"{source}[{i}]: unknown fields {unknown}; known: {TIER_FIELDS}")
        if "name" not in raw or "face_value" not in raw:
            raise ValueError(f"{source}[{i}]: a tier needs 'name' and 'face_value'")
        threshold = float(raw.get("threshold", 0.0))
        if 0 < threshold <= float(raw["face_value"]):
            raise ValueError(f"{source}[{i}] ({raw['name']}): field 'threshold' {threshold} is "
                             f"not above the face value {raw['face_value']}")  # fmt: skip
        try:
            out.append(CouponTier(**{k: raw[k] for k in TIER_FIELDS if k in raw}))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}[{i}]: {err}") from err
    try:
        return CouponCatalogue(tuple(out))
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err


@dataclass(frozen=True)
class Targets:
    """(U, K) what each viewer's coupon of each tier is good for (``NO_TARGET`` for an order
    coupon) and whether the tier can be offered at all; ``why`` says why not."""

    user_id: np.ndarray  # (U,) int64
    target: np.ndarray  # (U, K) int64
    offered: np.ndarray  # (U, K) bool
    why: np.ndarray  # (U, K) object: "" where offered

    def __post_init__(self) -> None:
        if self.target.shape != self.offered.shape or len(self.user_id) != len(self.target):
            raise ValueError("Targets: user_id, target and offered disagree in shape")


def _last_unbought(history: pd.DataFrame) -> pd.Series:
    """Each viewer's product clicked or carted most recently and not bought afterwards."""
    ev = history.loc[history["event_type"].isin(["click", "cart", "purchase"])]
    ev = ev.dropna(subset=["product_id"]).sort_values("ts", kind="stable")
    last = ev.groupby(["user_id", "product_id"])["event_type"].last().reset_index()
    last = last.loc[last["event_type"] != "purchase"]
    at = ev.groupby(["user_id", "product_id"])["ts"].max().reindex(
        pd.MultiIndex.from_frame(last[["user_id", "product_id"]])).to_numpy()  # fmt: skip
    last = last.assign(ts=at).sort_values("ts", kind="stable")
    return last.groupby("user_id")["product_id"].last().astype("int64")


def _top_room(history: pd.DataFrame) -> pd.Series:
    """Each viewer's most entered streamer (ties: the lower id)."""
    enters = history.loc[history["event_type"] == "enter"].dropna(subset=["streamer_id"])
    counts = enters.groupby(["user_id", "streamer_id"]).size().rename("n").reset_index()
    counts = counts.sort_values(["user_id", "n", "streamer_id"], ascending=[True, False, True])
    return counts.groupby("user_id")["streamer_id"].first().astype("int64")


def day_targets(
    catalogue: CouponCatalogue,
    user_ids: np.ndarray,
    history: pd.DataFrame,
    live_shelf: pd.DataFrame,
    price: pd.Series,
) -> Targets:
    """Targets of every tier for ``user_ids`` from their ``history`` events; ``live_shelf``:
    the (streamer_id, product_id) rows on air in the day the grants are for; ``price`` by
    product id."""
    user_ids = np.asarray(user_ids, dtype=np.int64)
    n, k = len(user_ids), len(catalogue.tiers)
    target = np.full((n, k), NO_TARGET, dtype=np.int64)
    why = np.full((n, k), "", dtype=object)
    room = _top_room(history).reindex(user_ids).to_numpy()
    product = _last_unbought(history).reindex(user_ids).to_numpy()
    live_rooms = set(live_shelf["streamer_id"].astype("int64"))
    live_products = set(live_shelf["product_id"].astype("int64"))
    for j, tier in enumerate(catalogue.tiers):
        if tier.scope == "streamer":
            has = ~pd.isna(room)
            target[has, j] = room[has].astype(np.int64)
            why[~has, j] = "no room visited"
            off_air = has & ~np.isin(target[:, j], list(live_rooms))
            why[off_air, j] = "room not live today"
        elif tier.scope == "product":
            has = ~pd.isna(product)
            target[has, j] = product[has].astype(np.int64)
            why[~has, j] = "no product left unbought"
            on_sale = np.isin(target[:, j], list(live_products))
            why[has & ~on_sale, j] = "product not on sale today"
            cheap = has & on_sale & (price.reindex(target[:, j]).to_numpy() <= tier.face_value)
            why[cheap, j] = "coupon worth the product's price or more"
    return Targets(user_ids, target, why == "", why)
