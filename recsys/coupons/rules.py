"""Allocations that are not the learned one: the seed's rule tiers, random, blanket, and a cut of
any ranked list of grants to a budget.

The seed's rules (value tier x price sensitivity x purchase intent, from the profiles):

1. a high-value viewer (top purchasing-power tier, or top monetary percentile with repeat
   purchases) gets the no-threshold member coupon;
2. a hesitant viewer (a product clicked or carted and not bought, and on sale today) who is
   price-sensitive gets the limited-time coupon for that product;
3. another price-sensitive viewer gets the threshold coupon (满X减Y);
4. a viewer with a favourite room gets that room's coupon;

in that priority, each group in a seeded random order, until the budget (at each tier's mean
cost per grant) is spent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.coupons.allocate import NO_COUPON
from recsys.coupons.catalogue import Targets
from recsys.market.coupons import CouponCatalogue

RULES = ("high_value", "hesitant", "price_sensitive", "loyal")


@dataclass(frozen=True)
class RuleTiers:
    """The tier name each rule grants (``RULES``), and the profile cut-offs."""

    tiers: Mapping[str, str]
    sensitive_at: float = 0.65  # price_sensitivity percentile
    min_evidence: float = 10.0  # clicks + comments + purchases behind the sensitivity
    high_value_pct: float = 0.8

    def check(self, catalogue: CouponCatalogue) -> None:
        if sorted(self.tiers) != sorted(RULES):
            raise ValueError(f"rule tiers: one tier per rule {RULES}, got {sorted(self.tiers)}")
        for rule, name in self.tiers.items():
            try:
                catalogue.index(name)
            except KeyError:
                raise ValueError(f"rule tiers: rule {rule!r} names tier {name!r}, not in the "
                                 f"catalogue") from None  # fmt: skip


def rule_choice(
    rules: RuleTiers, catalogue: CouponCatalogue, profile: pd.DataFrame, targets: Targets
) -> tuple[np.ndarray, np.ndarray]:
    """(tier per viewer or ``NO_COUPON``, the rule's priority: 0 first) for ``targets``'
    viewers; ``profile``: ``data.RULE_COLUMNS`` by user id."""
    rules.check(catalogue)
    p = profile.reindex(targets.user_id)
    high = (p["power_tier"].to_numpy() == 2) | (
        (p["monetary_pct"].to_numpy() >= rules.high_value_pct) & (p["frequency"].to_numpy() >= 3)
    )
    sensitive = (p["price_sensitivity"].to_numpy() >= rules.sensitive_at) & (
        p["price_evidence"].to_numpy() >= rules.min_evidence
    )
    tier = {r: catalogue.index(rules.tiers[r]) for r in RULES}
    offered = {r: targets.offered[:, tier[r]] for r in RULES}
    groups = (high & offered["high_value"], sensitive & offered["hesitant"],
              sensitive & offered["price_sensitive"], offered["loyal"])  # fmt: skip
    choice = np.full(len(p), NO_COUPON)
    priority = np.full(len(p), len(RULES))
    for rank in reversed(range(len(RULES))):  # the first rule that holds wins
        hit = groups[rank]
        choice[hit], priority[hit] = tier[RULES[rank]], rank
    return choice, priority


def cut_to_budget(
    choice: np.ndarray, priority: np.ndarray, cost: np.ndarray, budget: float, seed: int
) -> np.ndarray:
    """``choice`` kept in priority order (ties in a seeded random order) while the summed
    ``cost`` (per viewer, of their choice) stays within ``budget``; the rest get nothing."""
    if not budget > 0:
        raise ValueError(f"budget must be > 0, got {budget}")
    shuffle = np.random.default_rng(seed).random(len(choice))
    order = np.lexsort((shuffle, priority))
    order = order[choice[order] != NO_COUPON]
    within = np.cumsum(cost[order]) <= budget
    out = np.full(len(choice), NO_COUPON)
    out[order[within]] = choice[order[within]]
    return out


def random_choice(offered: np.ndarray, seed: int) -> np.ndarray:
    """A uniformly drawn offered tier per viewer (``NO_COUPON`` where none is offered)."""
    u = np.where(offered, np.random.default_rng(seed).random(offered.shape), -1.0)
    best = u.argmax(axis=1)
    return np.where(offered.any(axis=1), best, NO_COUPON)


def blanket_choice(offered: np.ndarray, tier: int) -> np.ndarray:
    """The one tier for every viewer it is offered to."""
    return np.where(offered[:, tier], tier, NO_COUPON)
