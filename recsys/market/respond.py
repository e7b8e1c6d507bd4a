"""How simulated viewers respond to slates and coupons, with the true probabilities kept.

A card's click and purchase probabilities are the world's planted card response
(``recsys.simulation.response``: interest, trust, brand and attribute match, price fit,
whether the streamer presents the product now, position bias). A coupon in the viewer's wallet
that applies to the card (``Wallets.best``) is used at purchase: it replaces the room's own
coupon drop in the purchase probability (``truth.purchase_probability``), so its planted uplift
grows with the viewer's price sensitivity and the coupon's depth, and is nil for a viewer who
would have bought anyway at a price they do not mind. Without one, the room's drop is claimed
with ``truth.claim_probability``.

Randomness comes from ``Draws``: uniform numbers per (request, position) fixed by the day's seed,
the same whichever policy runs, so two policies are compared on common random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.market.coupons import Wallets
from recsys.simulation import truth as planted
from recsys.simulation.behaviour import CART_BASE, CART_BOUGHT
from recsys.simulation.response import (
    ResponseConfig,
    WorldTruth,
    card_factors,
    card_probabilities,
    position_bias,
)

DRAWS = ("click", "claim", "buy", "cart")
OUTCOME_COLUMNS = ("click", "cart", "purchase", "amount", "coupon_value", "grant_id", "p_click",
                   "p_buy", "p_buy_no_grant", "price")  # fmt: skip


@dataclass(frozen=True)
class Draws:
    """(n_requests, k, len(DRAWS)) uniform numbers of one day."""

    u: np.ndarray

    @classmethod
    def of_day(cls, rng: np.random.Generator, n: int, k: int) -> Draws:
        return cls(rng.random((n, k, len(DRAWS))))

    def at(self, name: str, request_row: np.ndarray, position: np.ndarray) -> np.ndarray:
        return self.u[request_row, position, DRAWS.index(name)]


def _buy_probabilities(f: dict, config: ResponseConfig) -> tuple[np.ndarray, ...]:
    """(trust as it acts, P(buy | click) without a coupon, with the room's drop)."""
    trust = np.where(f["on_show"], f["trust"], config.shelf_trust_share * f["trust"])
    args = (f["interest"], trust, f["price"], f["power"], f["sensitivity"])
    extra = {"brand_match": f["brand"], "attr_match": f["attr_match"]}
    plain = planted.purchase_probability(*args, coupon_value=0.0, **extra)
    with_drop = planted.purchase_probability(*args, coupon_value=f["coupon"], **extra)
    return trust, plain, with_drop


def respond(
    truth: WorldTruth,
    shown: pd.DataFrame,
    request_row: np.ndarray,
    draws: Draws,
    wallets: Wallets,
    config: ResponseConfig,
) -> pd.DataFrame:
    """Outcomes of the shown cards (``checks.check_slates`` rows, in time order) with their true
    probabilities; redeemed coupons leave ``wallets``. ``request_row``: each card's request row
    in the day's draws."""
    f = card_factors(truth, shown)
    click_card, convert = card_probabilities(f, config)
    pos = shown["position"].to_numpy(np.int64)
    p_click = position_bias(pos) * click_card
    clicked = draws.at("click", request_row, pos) < p_click
    trust, plain, with_drop = _buy_probabilities(f, config)
    claim = np.where(f["coupon"] > 0, planted.claim_probability(f["sensitivity"]), 0.0)
    claimed = draws.at("claim", request_row, pos) < claim
    p_buy = convert.copy()  # expected, with what the wallet holds at the card's time
    bought = np.zeros(len(shown), dtype=bool)
    value, grant = np.where(claimed, f["coupon"], 0.0), np.full(len(shown), -1, dtype=np.int64)
    u_buy = draws.at("buy", request_row, pos)
    cols = [shown[c].to_numpy(np.int64) for c in ("user_id", "ts", "streamer_id", "product_id")]
    holders = np.fromiter(wallets.by_user, dtype=np.int64, count=len(wallets.by_user))
    for i in np.flatnonzero(clicked | np.isin(cols[0], holders)):
        coupon = wallets.best(cols[0][i], cols[1][i], cols[2][i], cols[3][i], f["price"][i])
        if coupon is not None:
            p_buy[i] = planted.purchase_probability(
                f["interest"][i], trust[i], f["price"][i], f["power"][i], f["sensitivity"][i],
                coupon.face_value, f["brand"][i], f["attr_match"][i],
            )  # fmt: skip
        if not clicked[i]:
            continue
        if coupon is not None:
            bought[i] = u_buy[i] < p_buy[i]
            if bought[i]:
                wallets.redeem(int(cols[0][i]), coupon)
                value[i], grant[i] = coupon.face_value, coupon.grant_id
        else:
            bought[i] = u_buy[i] < (with_drop[i] if claimed[i] else plain[i])
    carted = clicked & (draws.at("cart", request_row, pos) < CART_BASE + CART_BOUGHT * bought)
    out = shown.copy()
    out["click"], out["cart"], out["purchase"] = clicked, carted, bought
    out["amount"] = np.where(bought, np.round(f["price"] - value, 2), 0.0)
    out["coupon_value"] = np.where(bought, value, 0.0)
    out["grant_id"] = grant
    out["p_click"], out["p_buy"], out["p_buy_no_grant"] = p_click, p_buy, convert
    out["price"] = f["price"]
    return out
