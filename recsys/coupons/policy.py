"""The coupon product as market choosers: the learned allocation and the seed's rule tiers.

Both decide at the start of each day over the viewers the market asks about, so either can
stand behind a ``grants.CouponPolicy`` (alone, or as an arm of ``recsys-experiment``'s
``SplitPolicy``, which asks each arm about its own viewers; the budget then scales with the
share of viewers asked).

* ``LearnedChooser``: predicted incremental GMV and cost per (viewer, tier) from the uplift
  models, calibrated in face value, allocated by ``allocate.allocate`` under the budget;
* ``RuleChooser``: ``rules.rule_choice`` cut to the budget at each tier's mean cost per grant.

``coupon_arm`` builds either, behind a slate policy, from a ``recsys-coupons`` run's
``coupon_model.pkl``: an arm of ``recsys-experiment``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recsys.coupons.allocate import AllocationRules, allocate
from recsys.coupons.catalogue import Targets
from recsys.coupons.conversion import ConversionModel
from recsys.coupons.data import Features
from recsys.coupons.grants import CouponPolicy
from recsys.coupons.rules import RuleTiers, cut_to_budget, rule_choice
from recsys.coupons.uplift import UpliftModel, monotone_in_face_value
from recsys.market.coupons import CouponCatalogue


@dataclass(frozen=True)
class CouponModel:
    """What a decision needs: the two uplift models, the viewers' features, the catalogue."""

    gmv: UpliftModel
    cost: UpliftModel
    features: Features
    catalogue: CouponCatalogue
    fit: dict = field(default_factory=dict)  # what the learner chose while fitting
    conversion: ConversionModel | None = None  # the cvr learner's P(buy | click), for one card
    revisit_gaps: np.ndarray | None = None  # conversion.revisit_gaps of its training clicks

    def predict(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(value, cost, known): (n, K) predicted incremental GMV and cost; ``known`` marks
        viewers with features (the others get zeros and must not be granted)."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        row = pd.Index(self.features.user_id).get_indexer(user_ids)
        known = row >= 0
        k = len(self.catalogue.tiers)
        value, cost = np.zeros((len(user_ids), k)), np.zeros((len(user_ids), k))
        if known.any():
            x = self.features.x[row[known]]
            value[known] = monotone_in_face_value(self.gmv.predict(x), self.catalogue)
            cost[known] = np.maximum(monotone_in_face_value(self.cost.predict(x),
                                                            self.catalogue), 0.0)  # fmt: skip
        return value, cost, known


@dataclass
class LearnedChooser:
    model: CouponModel
    budget_per_viewer: float
    rules: AllocationRules = field(default_factory=AllocationRules)
    lam: dict[int, float] = field(default_factory=dict)  # each day's dual price

    def choose(self, targets: Targets, day: int) -> tuple[np.ndarray, np.ndarray]:
        value, cost, known = self.model.predict(targets.user_id)
        budget = self.budget_per_viewer * len(targets.user_id)
        result = allocate(value, cost, budget, targets.offered & known[:, None], self.rules)
        self.lam[day] = result.lam
        return result.choice, np.ones(len(result.choice))


@dataclass
class RuleChooser:
    rules: RuleTiers
    catalogue: CouponCatalogue
    profile: pd.DataFrame
    tier_cost: np.ndarray  # (K,) mean cost per grant of each tier
    budget_per_viewer: float
    seed: int = 0

    def choose(self, targets: Targets, day: int) -> tuple[np.ndarray, np.ndarray]:
        choice, priority = rule_choice(self.rules, self.catalogue, self.profile, targets)
        cost = np.where(choice >= 0, self.tier_cost[np.maximum(choice, 0)], 0.0)
        budget = self.budget_per_viewer * len(targets.user_id)
        out = cut_to_budget(choice, priority, cost, budget, self.seed + day)
        return out, np.ones(len(out))


CHOOSERS = ("learned", "rule")


def coupon_arm(saved: dict, chooser: str, slates, day_window, history=(), *,
               budget_per_viewer: float | None = None):  # fmt: skip
    """A ``grants.CouponPolicy`` granting by ``chooser`` (learned | rule) from the contents of
    a ``recsys-coupons`` run's ``coupon_model.pkl``, beside the slate policy ``slates``."""
    if chooser not in CHOOSERS:
        raise ValueError(f"coupon arm: chooser must be one of {CHOOSERS}, got {chooser!r}")
    missing = [k for k in ("model", "tier_cost", "rule_tiers", "rules", "budget_per_viewer")
               if k not in saved]  # fmt: skip
    if missing:
        raise ValueError(f"coupon arm: coupon_model.pkl lacks {missing}; rerun recsys-coupons")
    model: CouponModel = saved["model"]
    budget = float(budget_per_viewer or saved["budget_per_viewer"])
    if chooser == "learned":
        pick = LearnedChooser(model, budget, saved["rules"])
    else:
        pick = RuleChooser(saved["rule_tiers"], model.catalogue, model.features.profile,
                           np.asarray(saved["tier_cost"]), budget, int(saved.get("seed", 0)))
    return CouponPolicy(slates, pick, model.catalogue, day_window, history,
                        name=f"coupons_{chooser}")  # fmt: skip
