"""The coupon catalogue and the wallet of coupons each viewer holds.

A tier is what a growth team configures: a face value, a threshold (满X减Y: the order must reach
X yuan; 0 for a no-threshold coupon), a scope (any order, one streamer's room, or one product)
and a validity. A grant puts one coupon of a tier in a viewer's wallet; the best coupon that
applies to a purchase (largest face value, then earliest expiry) is redeemed automatically, and
its face value is the platform's cost. A face value never exceeds the price it is taken off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

SCOPES = ("order", "streamer", "product")
GRANT_COLUMNS = (
    "grant_id",
    "ts",
    "user_id",
    "tier",
    "scope",
    "target_id",
    "face_value",
    "threshold",
    "expires_ts",
)


@dataclass(frozen=True)
class CouponTier:
    name: str
    face_value: float  # yuan off the order
    threshold: float = 0.0  # 满X减Y: the order must reach this many yuan (0: none)
    scope: str = "order"  # order | streamer (one room) | product (one product)
    validity_s: int = 86_400

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"coupon tier {self.name!r}: scope must be one of {SCOPES}")
        if self.face_value <= 0 or self.threshold < 0 or self.validity_s <= 0:
            raise ValueError(
                f"coupon tier {self.name!r}: face_value and validity_s must be > 0, "
                f"threshold >= 0; got {self.face_value}, {self.validity_s}, {self.threshold}"
            )
        if self.threshold and self.face_value >= self.threshold:
            raise ValueError(f"coupon tier {self.name!r}: face value must be below its threshold")


@dataclass(frozen=True)
class CouponCatalogue:
    tiers: tuple[CouponTier, ...]

    def __post_init__(self) -> None:
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"coupon catalogue: tier names repeat: {names}")

    @classmethod
    def from_config(cls, tiers: Sequence[Mapping]) -> CouponCatalogue:
        return cls(tuple(CouponTier(**dict(t)) for t in tiers))

    def index(self, name: str) -> int:
        for i, tier in enumerate(self.tiers):
            if tier.name == name:
                return i
        raise KeyError(name)


# The seed's tiers: a no-threshold member coupon for high-value viewers, threshold coupons,
# a coupon for one room and a limited-time coupon for one product.
DEFAULT_TIERS = CouponCatalogue(
    (
        CouponTier("member_10", 10.0),
        CouponTier("full_199_minus_30", 30.0, threshold=199.0),
        CouponTier("room_20", 20.0, threshold=99.0, scope="streamer"),
        CouponTier("flash_product_15", 15.0, scope="product", validity_s=1800),
    )
)


@dataclass(frozen=True)
class Coupon:
    grant_id: int
    ts: int
    scope: str
    target_id: int
    face_value: float
    threshold: float
    expires_ts: int

    def applies(self, ts: int, streamer_id: int, product_id: int, price: float) -> bool:
        target = {"order": self.target_id, "streamer": streamer_id, "product": product_id}
        return (
            self.ts <= ts <= self.expires_ts
            and self.threshold <= price
            and self.face_value < price
            and target[self.scope] == self.target_id
        )


class Wallets:
    """Every viewer's granted, unredeemed coupons."""

    def __init__(self) -> None:
        self.by_user: dict[int, list[Coupon]] = {}

    def add(self, grants: pd.DataFrame) -> None:
        """Grants as rows of ``GRANT_COLUMNS``."""
        for row in grants.itertuples(index=False):
            coupon = Coupon(
                int(row.grant_id),
                int(row.ts),
                str(row.scope),
                int(row.target_id),
                float(row.face_value),
                float(row.threshold),
                int(row.expires_ts),
            )
            self.by_user.setdefault(int(row.user_id), []).append(coupon)

    def expire(self, now: int) -> None:
        """Forget coupons that expired before ``now``."""
        for user, coupons in list(self.by_user.items()):
            alive = [c for c in coupons if c.expires_ts >= now]
            if alive:
                self.by_user[user] = alive
            else:
                del self.by_user[user]

    def best(
        self, user_id: int, ts: int, streamer_id: int, product_id: int, price: float
    ) -> Coupon | None:
        """The best coupon that applies (largest face value, then earliest expiry), if any."""
        held = self.by_user.get(user_id, ())
        fits = [c for c in held if c.applies(ts, streamer_id, product_id, price)]
        return min(fits, key=lambda c: (-c.face_value, c.expires_ts, c.grant_id), default=None)

    def redeem(self, user_id: int, coupon: Coupon) -> None:
        self.by_user[user_id].remove(coupon)

    def held(self) -> int:
        return sum(len(c) for c in self.by_user.values())
