"""Train on some viewers' randomised grants, judge on the others' against the planted truth.

``split_viewers`` holds out a seeded share of viewers. ``fit_models`` fits the uplift learners
(incremental GMV and cost) on the training viewers: the meta-learners of ``uplift`` and the
conversion learner of ``conversion``. ``ranking_quality`` gives, per learner and
tier on the held-out viewer-days, Qini and AUUC on the observed outcomes, the noise-free AUUC
against the true effects, and the correlation of predicted with true uplift.
``policy_values`` allocates each held-out day under the same budget by the learned model, the
seed's rule tiers, the oracle (true effects), random tiers and a blanket tier, and scores each
allocation by its true incremental GMV per yuan of true cost, with bootstrap intervals over
viewers. ``paced_day`` runs the online pacing over one held-out day's arrivals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.coupons.allocate import NO_COUPON, AllocationRules, allocate
from recsys.coupons.conversion import PENALTIES, fit_conversion_uplift
from recsys.coupons.metrics import (
    correlations,
    qini_auuc,
    ratio_interval,
    ratio_of_ratios,
    truth_auuc,
)
from recsys.coupons.pacing import PacingConfig, pace
from recsys.coupons.policy import CouponModel
from recsys.coupons.rules import (
    RuleTiers,
    blanket_choice,
    cut_to_budget,
    random_choice,
    rule_choice,
)
from recsys.coupons.study import EXPOSURE, GrantData
from recsys.coupons.uplift import KINDS, fit_per_tier, fit_uplift
from recsys.market.coupons import CouponCatalogue

LEARNERS = (*KINDS, "cvr")
POLICIES = ("learned", "rule", "oracle_expected", "oracle", "features_ceiling", "random",
            "blanket")  # fmt: skip
OTHERS = POLICIES[1:]


def split_viewers(user_ids: np.ndarray, held_out: float, seed: int) -> np.ndarray:
    """Boolean mask over ``user_ids``: the held-out viewers."""
    if not 0 < held_out < 1:
        raise ValueError(f"held_out share must lie in (0, 1), got {held_out}")
    return np.random.default_rng(seed).random(len(user_ids)) < held_out


def fit_models(data: GrantData, catalogue: CouponCatalogue, kind: str, alpha: float,
               seed: int, penalties: tuple[float, ...] = PENALTIES) -> CouponModel:  # fmt: skip
    """The uplift models of learner ``kind`` (one of ``LEARNERS``) on ``data``."""
    if kind not in LEARNERS:
        raise ValueError(f"uplift learner {kind!r}: one of {LEARNERS}")
    if kind == "cvr":
        fit = fit_conversion_uplift(data, catalogue, alpha=alpha, penalties=penalties, seed=seed)
        return CouponModel(fit.gmv, fit.cost, data.features, catalogue,
                           {"penalty": fit.penalty, "cv_log_loss": fit.cv_log_loss},
                           fit.conversion, fit.revisit_gaps)  # fmt: skip
    x = data.row_x()
    arm, e = data.rows["arm"].to_numpy(), data.rows["propensity"].to_numpy()
    k = len(catalogue.tiers)
    exposure = None
    if kind == "dr":
        exposure = np.log1p(data.rows[list(EXPOSURE)].to_numpy(np.float64))
    fits = {y: fit_uplift(kind, x, arm, e, data.rows[y].to_numpy(), k, offered=data.offered,
                          alpha=alpha, exposure=exposure, seed=seed)
            for y in ("gmv", "cost")}  # fmt: skip
    return CouponModel(fits["gmv"], fits["cost"], data.features, catalogue)


def features_ceiling(data: GrantData, catalogue: CouponCatalogue, alpha: float) -> CouponModel:
    """The last stage's regression fitted to the true effects (each viewer's, averaged over
    their days) instead of estimates: what the viewer's features can carry at best, so the
    learned allocation's gap to the oracle splits into estimation and what the profile does
    not know."""
    gmv, cost = (fit_per_tier("features_ceiling", data.row_x(), y, data.offered, alpha)
                 for y in data.expected())  # fmt: skip
    return CouponModel(gmv, cost, data.features, catalogue)


def exposure_balance(data: GrantData, catalogue: CouponCatalogue) -> dict:
    """Mean exposure per viewer-day by arm: equal across arms when the coupon cannot move it
    (the condition for reading it in the DR nuisances)."""
    names = ["none", *[t.name for t in catalogue.tiers]]
    means = data.rows.groupby("arm")[list(EXPOSURE)].mean()
    return {names[int(a) + 1]: {k: round(float(v), 3) for k, v in row.items()}
            for a, row in means.iterrows()}  # fmt: skip


def tier_cost(data: GrantData, k: int) -> np.ndarray:
    """Mean observed cost per grant of each tier (what a rule-based team would budget with)."""
    arm = data.rows["arm"].to_numpy()
    cost = data.rows["cost"].to_numpy()
    return np.array([cost[arm == j].mean() if (arm == j).any() else 0.0 for j in range(k)])


def ranking_quality(model: CouponModel, test: GrantData) -> dict:
    value, _, _ = model.predict(test.rows["user_id"].to_numpy())
    arm, gmv = test.rows["arm"].to_numpy(), test.rows["gmv"].to_numpy()
    expected_gmv, _ = test.expected()
    out = {}
    for j, tier in enumerate(model.catalogue.tiers):
        rows = test.offered[:, j] & ((arm == j) | (arm == NO_COUPON))
        q = qini_auuc(value[rows, j], arm[rows] == j, gmv[rows], test.true_gmv[rows, j])
        on = test.offered[:, j]
        first = on & ~test.rows["user_id"].duplicated().to_numpy()  # one row per viewer
        expected = {f"{k}_expected": v for k, v in
                    correlations(value[first, j], expected_gmv[first, j]).items()}  # fmt: skip
        out[tier.name] = (
            q
            | expected
            | {
                "truth_auuc": truth_auuc(value[on, j], test.true_gmv[on, j]),
                "truth_auuc_expected": truth_auuc(value[first, j], expected_gmv[first, j]),
                **correlations(value[on, j], test.true_gmv[on, j]),
                "mean_true_gmv": float(test.true_gmv[on, j].mean()),
                "mean_predicted_gmv": float(value[on, j].mean()),
            }
        )
    return out


@dataclass(frozen=True)
class Budgeting:
    budget_per_viewer: float
    rules: AllocationRules
    rule_tiers: RuleTiers
    blanket_tier: str
    seed: int = 0


def _choices(model: CouponModel, ceiling: CouponModel, test: GrantData, rows: np.ndarray,
             b: Budgeting, tier_cost_: np.ndarray) -> dict[str, np.ndarray]:  # fmt: skip
    users = test.rows["user_id"].to_numpy()[rows]
    offered = test.offered[rows]
    budget = b.budget_per_viewer * len(users)

    def by_model(m: CouponModel) -> np.ndarray:
        value, cost, known = m.predict(users)
        return allocate(value, cost, budget, offered & known[:, None], b.rules).choice

    learned = by_model(model)
    oracle = allocate(test.true_gmv[rows], test.true_cost[rows], budget, offered, b.rules).choice
    gmv, cost = test.expected()
    expected = allocate(gmv[rows], cost[rows], budget, offered, b.rules).choice

    def cut(choice, priority, seed):
        c = np.where(choice >= 0, tier_cost_[np.maximum(choice, 0)], 0.0)
        return cut_to_budget(choice, priority, c, budget, seed)

    targets = _Targets(users, offered)
    rule, priority = rule_choice(b.rule_tiers, model.catalogue, test.features.profile, targets)
    flat = np.zeros(len(users), dtype=np.int64)
    blanket = blanket_choice(offered, model.catalogue.index(b.blanket_tier))
    return {"learned": learned, "rule": cut(rule, priority, b.seed),
            "oracle": oracle, "oracle_expected": expected, "features_ceiling": by_model(ceiling),
            "random": cut(random_choice(offered, b.seed), flat, b.seed + 1),
            "blanket": cut(blanket, flat, b.seed + 2)}  # fmt: skip


@dataclass(frozen=True)
class _Targets:
    user_id: np.ndarray
    offered: np.ndarray


def policy_values(model: CouponModel, ceiling: CouponModel, test: GrantData, b: Budgeting,
                  tier_cost_) -> dict:  # fmt: skip
    """Each policy's true incremental GMV per yuan over the held-out viewer-days, each day
    allocated under the same budget, with intervals over viewers; and paired ratios.
    ``ceiling``: ``features_ceiling`` of the training viewers."""
    days = test.rows["day"].to_numpy()
    n = len(test.rows)
    gained = {p: np.zeros(n) for p in POLICIES}
    spent = {p: np.zeros(n) for p in POLICIES}
    for day in np.unique(days):
        rows = np.flatnonzero(days == day)
        for name, choice in _choices(model, ceiling, test, rows, b, tier_cost_).items():
            has = choice >= 0
            gained[name][rows[has]] = test.true_gmv[rows[has], choice[has]]
            spent[name][rows[has]] = test.true_cost[rows[has], choice[has]]
    user = test.rows["user_id"].to_numpy()
    _, inv = np.unique(user, return_inverse=True)
    per = {p: (np.bincount(inv, gained[p]), np.bincount(inv, spent[p])) for p in POLICIES}
    budget = b.budget_per_viewer * n
    out = {p: {"gmv_per_yuan": ratio_interval(*per[p], seed=b.seed),
               "incremental_gmv": float(gained[p].sum()), "true_spend": float(spent[p].sum()),
               "budget": budget, "grants": int((spent[p] > 0).sum())}
           for p in POLICIES}  # fmt: skip
    for other in OTHERS:
        out[f"learned_over_{other}"] = ratio_of_ratios(*per["learned"], *per[other], seed=b.seed)
    return out


def _arrivals(model: CouponModel, test: GrantData, day: int):
    """(value, cost, offered, rows) of the viewers arriving on ``day``, in arrival order."""
    rows = np.flatnonzero((test.rows["day"].to_numpy() == day) & (test.first_ts >= 0))
    rows = rows[np.argsort(test.first_ts[rows], kind="stable")]
    value, cost, known = model.predict(test.rows["user_id"].to_numpy()[rows])
    return value, cost, test.offered[rows] & known[:, None], rows


def paced_day(model: CouponModel, test: GrantData, b: Budgeting, config: PacingConfig) -> dict:
    """The last held-out day decided online in arrival order, starting from the dual price of
    the day before's offline allocation; spend is the predicted cost committed."""
    days = np.unique(test.rows["day"])
    if len(days) < 2:
        raise ValueError("paced day: needs two held-out days (the first sets the price)")
    budget = b.budget_per_viewer * int((test.rows["day"] == days[-1]).sum())
    value, cost, offered, _ = _arrivals(model, test, days[-2])
    lam0 = allocate(value, cost, budget, offered, b.rules).lam
    value, cost, offered, rows = _arrivals(model, test, days[-1])
    paced = pace(value, cost, budget, lam0, offered, b.rules, config=config)
    chosen = paced.choice >= 0
    true_spend = test.true_cost[rows[chosen], paced.choice[chosen]].sum()
    return {"day": int(days[-1]), "arrivals": int(len(rows)), "budget": budget, "lam0": lam0,
            "spend": paced.spend, "spend_share": paced.spend / budget,
            "true_spend": float(true_spend), "grants": int(chosen.sum())}  # fmt: skip
