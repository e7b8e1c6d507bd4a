"""Personalised coupons (千人千面的优惠券): multi-tier uplift under a budget, in real time.

From randomised grants to a budgeted, paced, real-time decision::

    catalogue = load_catalogue(cfg_tiers)                 # tiers: 满X减Y, scope, validity
    market, data = collect(WorldConfig(preset="small"), catalogue, propensities, "runs/c")
    model = fit_models(train, catalogue, "cvr", alpha=30.0, seed=0)  # incremental GMV, cost
    value, cost, known = model.predict(user_ids)          # (n, K) per tier
    plan = allocate(value, cost, budget, offered, AllocationRules(roi_floor=1.0))
    day = pace(value, cost, budget, plan.lam, offered)    # online, spend tracks the budget
    trigger = HesitationTrigger(model, "flash_product_15", plan.lam, budget, price_of)
    trigger.observe(user, "cart", ts, product); trigger.decide(user, now)   # with a reason

Modules: ``catalogue`` (tiers from config, each viewer's targets), ``grants`` (randomised and
fixed choosers behind ``CouponPolicy`` in the market), ``data`` (profile features, outcomes),
``truth`` (the planted true effect of every tier), ``uplift`` (T-/X-/DR-learners on a ridge
base, calibration in face value), ``conversion`` (a coupon-aware model of P(buy | click)
turned into uplift per viewer: the default learner), ``allocate`` (Lagrangian dual of the
multiple-choice knapsack), ``pacing`` (feedback control of the dual price), ``rules`` (the
seed's tiers, random, blanket), ``policy`` (learned and rule choosers), ``metrics`` (Qini,
AUUC, intervals), ``study`` / ``evaluate`` / ``report`` (the end-to-end run behind
``recsys-coupons``), ``ab`` (the learned allocation against the rule tiers as an A/B in the
market), ``trigger`` (the hesitation trigger), ``trigger_truth`` (the trigger judged against the
planted truth on logged days) and ``service`` (its ``GET /coupon`` router for ``recsys-serve``).
"""

from recsys.coupons.allocate import Allocation, AllocationRules, allocate
from recsys.coupons.catalogue import Targets, day_targets, load_catalogue
from recsys.coupons.evaluate import fit_models
from recsys.coupons.pacing import PacedDay, PacingConfig, pace
from recsys.coupons.policy import CouponModel, LearnedChooser, RuleChooser
from recsys.coupons.report import CouponsConfig, run_coupons
from recsys.coupons.rules import RuleTiers
from recsys.coupons.study import WorldConfig, collect
from recsys.coupons.trigger import CouponDecision, HesitationTrigger
from recsys.coupons.uplift import UpliftModel, fit_uplift

__all__ = [
    "Allocation",
    "AllocationRules",
    "CouponModel",
    "CouponDecision",
    "CouponsConfig",
    "HesitationTrigger",
    "LearnedChooser",
    "PacedDay",
    "PacingConfig",
    "RuleChooser",
    "RuleTiers",
    "Targets",
    "UpliftModel",
    "WorldConfig",
    "allocate",
    "collect",
    "day_targets",
    "fit_models",
    "fit_uplift",
    "load_catalogue",
    "pace",
    "run_coupons",
]
