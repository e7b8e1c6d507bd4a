"""The real-time trigger: a limited-time coupon for the product a viewer hesitates over.

A viewer hesitates when they clicked or carted a product in a live room and have not bought it
within ``wait_s``. Then the day's model and dual price decide: the coupon's predicted
incremental GMV for this viewer minus ``lam`` times its predicted cost must be positive and
clear the ROI floor, the coupon must be worth less than the product's price, the product must
still be on sale, and the day's budget must hold the cost. Every answer carries a reason code;
a refusal is an answer, never silence:

``granted`` | ``no_consent`` (the viewer withheld personalised coupons) |
``unknown_user`` | ``no_hesitation`` | ``still_deciding`` | ``bought`` |
``already_granted`` | ``not_on_sale`` | ``coupon_exceeds_price`` | ``below_price_of_a_yuan`` |
``below_roi_floor`` | ``budget_spent``.

The prediction: with the conversion learner's model (``CouponModel.conversion``), the coupon is
priced at the card (``conversion.card_value``): this viewer's purchase probability at this
product's price with and without it, times the logged chance that a hesitation is followed by
another click on the product while the coupon is valid. Otherwise the product tier's
per-viewer prediction of the uplift model is used.

The trigger keeps per viewer only the last hesitation (product, time); events arrive through
``observe`` (the service feeds it every accepted posted event).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recsys.coupons.conversion import card_value, revisit_probability
from recsys.coupons.policy import CouponModel
from recsys.privacy.consent import ConsentBook

HESITATION_EVENTS = ("click", "cart")


def shelf_prices(
    showcase: pd.DataFrame, live_sessions: pd.DataFrame, products: pd.DataFrame
) -> Callable[[int, int], float | None]:
    """``price_of(product, now)``: the product's price while it is on the shelf of a room on
    air at ``now``, else None (not on sale)."""
    shelf = showcase[["session_id", "product_id"]].drop_duplicates()
    shelf = shelf.merge(live_sessions[["session_id", "start_ts", "end_ts"]], on="session_id")
    by_product = {int(p): (g["start_ts"].to_numpy(np.int64), g["end_ts"].to_numpy(np.int64))
                  for p, g in shelf.groupby("product_id")}  # fmt: skip
    price = products.set_index("product_id")["price"]

    def price_of(product: int, now: int) -> float | None:
        spans = by_product.get(int(product))
        if spans is None or not ((spans[0] <= now) & (now <= spans[1])).any():
            return None
        return float(price.loc[product])

    return price_of


@dataclass(frozen=True)
class CouponDecision:
    user_id: int
    grant: bool
    reason: str
    tier: str | None = None
    product_id: int | None = None
    face_value: float | None = None
    expires_ts: int | None = None
    expected_gmv: float | None = None
    expected_cost: float | None = None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class HesitationTrigger:
    """Decides limited-time product coupons; ``price_of(product, now)`` is the product's price
    if it is on a live shelf at ``now``, else None."""

    model: CouponModel
    tier: str  # the catalogue's limited-time product tier
    lam: float  # the day's dual price of a yuan
    budget: float  # the day's budget for triggered coupons
    price_of: Callable[[int, int], float | None]
    wait_s: int = 300
    roi_floor: float = 1.0
    spent: float = 0.0
    last: dict[int, tuple[int, int, str]] = field(default_factory=dict)  # user: product, ts, kind
    granted: set[tuple[int, int]] = field(default_factory=set)
    consent: ConsentBook | None = None  # None: every viewer allows personalised coupons

    def __post_init__(self) -> None:
        self.column = self.model.catalogue.index(self.tier)
        t = self.model.catalogue.tiers[self.column]
        if t.scope != "product":
            raise ValueError(f"hesitation trigger: tier {self.tier!r} has scope {t.scope!r}, "
                             f"a product tier is needed")  # fmt: skip
        if not self.budget > 0 or self.lam < 0 or self.wait_s < 0:
            raise ValueError(f"hesitation trigger: budget must be > 0, lam and wait_s >= 0; "
                             f"got {self.budget}, {self.lam}, {self.wait_s}")  # fmt: skip
        users = self.model.features.user_id
        self.row = {u: i for i, u in enumerate(users.tolist())}  # the viewers the model knows
        m = self.model
        self.revisit = None if m.conversion is None or m.revisit_gaps is None else \
            revisit_probability(m.revisit_gaps, self.wait_s, t.validity_s)  # fmt: skip
        self.predicted: dict[int, tuple[float, float]] = {}
        if self.revisit is None:  # features are fixed for the day: each prediction made once
            value, cost, _ = m.predict(users)
            pairs = zip(value[:, self.column].tolist(), cost[:, self.column].tolist(), strict=True)
            self.predicted = dict(zip(users.tolist(), pairs, strict=True))

    def value(self, user_id: int, price: float) -> tuple[float, float]:
        """(incremental GMV, expected cost) of the coupon for ``user_id`` on a product at
        ``price``."""
        if self.revisit is None:
            return self.predicted[user_id]
        x = self.model.features.x[self.row[user_id]]
        face = self.model.catalogue.tiers[self.column].face_value
        return card_value(self.model.conversion, x[None, :], price, face, self.revisit)

    def observe(self, user_id: int, event_type: str, ts: int, product_id: int) -> None:
        if event_type in HESITATION_EVENTS and product_id >= 0:
            self.last[user_id] = (product_id, ts, event_type)
        elif event_type == "purchase" and self.last.get(user_id, (-1,))[0] == product_id:
            self.last[user_id] = (product_id, ts, "purchase")

    def decide(self, user_id: int, now: int) -> CouponDecision:
        tier = self.model.catalogue.tiers[self.column]
        if self.consent is not None and not self.consent.allows(user_id, "coupons"):
            return CouponDecision(user_id, False, "no_consent")
        if user_id not in self.row:
            return CouponDecision(user_id, False, "unknown_user")
        if user_id not in self.last:
            return CouponDecision(user_id, False, "no_hesitation")
        product, ts, kind = self.last[user_id]
        refusal = self._refusal(user_id, product, ts, kind, now)
        if refusal:
            return CouponDecision(user_id, False, refusal, product_id=product)
        price = self.price_of(product, now)
        v, c = self.value(user_id, price) if price and tier.face_value < price else (0.0, 0.0)
        reason = ("not_on_sale" if price is None else
                  "coupon_exceeds_price" if tier.face_value >= price else
                  "below_price_of_a_yuan" if v - self.lam * c <= 0 else
                  "below_roi_floor" if v < self.roi_floor * c else
                  "budget_spent" if self.spent + c > self.budget else "")  # fmt: skip
        if reason:
            return CouponDecision(user_id, False, reason, product_id=product)
        self.spent += c
        self.granted.add((user_id, product))
        return CouponDecision(user_id, True, "granted", tier.name, product, tier.face_value,
                              now + tier.validity_s, v, c)  # fmt: skip

    def room_offer(self, product: int, now: int, window_s: int = 300) -> str:
        """The host's view of an attention spike on ``product``: for the viewers who clicked or
        carted it within ``window_s`` and have not bought it, whether the model finds the
        limited-time product coupon worth its price of a yuan (nothing is granted or spent
        here; each viewer's grant is still ``decide``'s)."""
        tier = self.model.catalogue.tiers[self.column]
        price = self.price_of(product, now)
        if price is None or tier.face_value >= price:
            return f"no {tier.name} coupon: product {product} is not on sale above its face value"
        viewers = [u for u, (p, ts, kind) in self.last.items()
                   if p == product and kind != "purchase" and now - ts <= window_s]  # fmt: skip
        worth = [self.value(u, price) for u in viewers if self._worth(u, price)]
        if not worth:
            return (f"no {tier.name} coupon: not worth its cost for any of the {len(viewers)} "
                    f"viewers interested in product {product}")  # fmt: skip
        value, cost = (sum(x) for x in zip(*worth, strict=True))
        return (f"{tier.name} coupon (¥{tier.face_value:g} off, {tier.validity_s // 60} min) for "
                f"{len(worth)} of {len(viewers)} interested viewers: +¥{value:.0f} expected "
                f"incremental GMV for ¥{cost:.0f}")  # fmt: skip

    def _worth(self, user_id: int, price: float) -> bool:
        if self.consent is not None and not self.consent.allows(user_id, "coupons"):
            return False
        if user_id not in self.row:
            return False
        v, c = self.value(user_id, price)
        return v - self.lam * c > 0 and v >= self.roi_floor * c

    def _refusal(self, user_id: int, product: int, ts: int, kind: str, now: int) -> str:
        if kind == "purchase":
            return "bought"
        if now - ts < self.wait_s:
            return "still_deciding"
        if (user_id, product) in self.granted:
            return "already_granted"
        return ""
