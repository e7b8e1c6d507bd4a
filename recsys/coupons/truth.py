"""The planted truth of a coupon: each viewer's true incremental GMV and cost under each tier.

A day's cards do not depend on the coupons granted at its start (the slate policy never reads
wallets, and every card's draws are fixed by the day's seed), so from one logged day the
planted response (``recsys.simulation.response``) gives, for every viewer and every tier, what
that day would have been with the tier's coupon in the wallet:

* a card the coupon applies to (in scope, within validity, price at or above the threshold and
  above the face value) is bought with ``q = p_click * P(buy | coupon)`` instead of
  ``r = p_click * P(buy | no grant)`` (the room's own drop as it was) while the coupon is held;
* the coupon is used once: it is still held at a card with ``H = prod (1 - q)`` over the
  applicable cards before it, in time order.

So incremental orders are ``sum H (q - r)``, incremental GMV (at list price)
``sum H (q - r) price`` and expected cost ``face * sum H q`` (a viewer who would have bought
anyway costs the face value and brings nothing). Exact in expectation for a viewer holding
no other granted coupon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.coupons.catalogue import Targets
from recsys.market.coupons import CouponCatalogue, CouponTier
from recsys.simulation import truth as planted
from recsys.simulation.response import ResponseConfig, WorldTruth, card_factors

CARD_COLUMNS = ("request_id", "user_id", "ts", "position", "session_id", "streamer_id",
                "product_id", "p_click", "p_buy_no_grant", "price")  # fmt: skip


@dataclass(frozen=True)
class TrueEffects:
    """(U, K) true incremental GMV and expected cost per viewer and tier on one day."""

    user_id: np.ndarray
    gmv: np.ndarray
    cost: np.ndarray
    orders: np.ndarray


def day_cards(logs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """A logged day's cards (slates and message visits) with their true probabilities."""
    truth = logs["truth/impressions"]
    cards = logs["impressions"].merge(truth, on=["request_id", "position"], how="inner")
    if len(cards) != len(truth):
        raise ValueError(f"day logs: {len(truth)} truth rows but {len(cards)} match a card")
    return cards[list(CARD_COLUMNS)].sort_values(["user_id", "ts", "position"], kind="stable",
                                                 ignore_index=True)  # fmt: skip


def applies(tier: CouponTier, cards: pd.DataFrame, target: np.ndarray, grant_ts: int):
    """Whether a ``tier`` coupon granted at ``grant_ts`` for ``target`` (per card; -1: not
    granted) can be used at each of ``cards``."""
    ts, price = cards["ts"].to_numpy(np.int64), cards["price"].to_numpy(np.float64)
    ok = (ts >= grant_ts) & (ts <= grant_ts + tier.validity_s) & (price > tier.face_value)
    ok &= price >= tier.threshold
    if tier.scope == "streamer":
        ok &= cards["streamer_id"].to_numpy(np.int64) == target
    elif tier.scope == "product":
        ok &= cards["product_id"].to_numpy(np.int64) == target
    return ok & (target >= 0)


def coupon_buy_probability(
    truth: WorldTruth, cards: pd.DataFrame, face_value: float, response: ResponseConfig
) -> np.ndarray:
    """P(buy | click) of each card with a wallet coupon of ``face_value`` applied."""
    f = card_factors(truth, cards)
    trust = np.where(f["on_show"], f["trust"], response.shelf_trust_share * f["trust"])
    return planted.purchase_probability(
        f["interest"], trust, f["price"], f["power"], f["sensitivity"], coupon_value=face_value,
        brand_match=f["brand"], attr_match=f["attr_match"],
    )  # fmt: skip


def held_coupon_sums(
    q: np.ndarray,
    r: np.ndarray,
    ok: np.ndarray,
    price: np.ndarray,
    group: np.ndarray,
    n: int,
    face_value: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n,) incremental orders, incremental GMV and expected cost per group of one coupon used
    once: at each card (in time order within its ``group``) where it applies (``ok``) it is
    still held with ``H = prod (1 - q)`` over the cards before it and is bought with ``q``
    instead of ``r`` (``q`` is 0 where it does not apply)."""
    log_keep = np.log1p(-np.minimum(q, 1.0 - 1e-12))
    held = np.exp(pd.Series(log_keep).groupby(group).cumsum().to_numpy() - log_keep)
    lift = np.where(ok, held * (q - r), 0.0)
    cost = np.bincount(group, np.where(ok, held * q, 0.0), minlength=n) * face_value
    return (np.bincount(group, lift, minlength=n), np.bincount(group, lift * price, minlength=n),
            cost)  # fmt: skip


def true_effects(
    truth: WorldTruth,
    cards: pd.DataFrame,
    catalogue: CouponCatalogue,
    targets: Targets,
    grant_ts: int,
    response: ResponseConfig | None = None,
) -> TrueEffects:
    """True effects of every tier for every viewer of ``targets`` (0 for a tier not offered or a
    viewer without cards) on the day of ``cards`` (``day_cards``), coupons granted at
    ``grant_ts``."""
    response = response or ResponseConfig()
    n, k = targets.target.shape
    out = {name: np.zeros((n, k)) for name in ("gmv", "cost", "orders")}
    row = pd.Index(targets.user_id).get_indexer(cards["user_id"].to_numpy(np.int64))
    cards, row = cards.loc[row >= 0].reset_index(drop=True), row[row >= 0]
    click, price = cards["p_click"].to_numpy(), cards["price"].to_numpy()
    r = click * cards["p_buy_no_grant"].to_numpy()
    for j, tier in enumerate(catalogue.tiers):
        target = np.where(targets.offered[row, j], targets.target[row, j], -1)
        if tier.scope == "order":
            target = np.where(targets.offered[row, j], 0, -1)
        ok = applies(tier, cards, target, grant_ts)
        q = np.zeros(len(cards))
        if ok.any():
            q[ok] = click[ok] * coupon_buy_probability(truth, cards.loc[ok], tier.face_value,
                                                       response)  # fmt: skip
        sums = held_coupon_sums(q, r, ok, price, row, n, tier.face_value)
        for name, total in zip(("orders", "gmv", "cost"), sums, strict=True):
            out[name][:, j] = total
    return TrueEffects(targets.user_id, out["gmv"], out["cost"], out["orders"])
