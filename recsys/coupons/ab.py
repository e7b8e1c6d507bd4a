"""The learned allocation against the seed's rule tiers as an A/B test in the market.

The experiment machinery of ``recsys-experiment`` (``recsys.experiments``: salted assignment,
``SplitPolicy``, ``analyse``) runs viewers split between a control arm (rule tiers) and a
treatment arm (the learned allocation), both behind the same slate policy, on the market days
after the study's. The estimates come from the logs alone: per viewer, list-price GMV of the
cards' purchases and the face value of redeemed coupons, compared between arms with Welch
intervals. The true effect comes from the planted truth: at each day's start every arm also
decides for every viewer (as if it served everyone, at the same budget per viewer), and
``truth.true_effects`` gives each viewer's true incremental GMV and cost under each arm's
decision; the true effect on a metric is the mean over viewers of the treatment's minus the
control's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.coupons.data import day_outcomes
from recsys.coupons.grants import CouponPolicy
from recsys.coupons.truth import day_cards, true_effects
from recsys.experiments import Experiment, Metric, analyse
from recsys.experiments.arms import SplitPolicy
from recsys.market import Market, MarketConfig
from recsys.market.policy import CouponGrants, MarketView, Policy, Requests, Slates

ARMS = ("control", "treatment")
METRICS = ("gmv", "cost", "net")


class _Shadowed(Policy):
    """The experiment's policy, with every arm's decision for every viewer kept each day."""

    def __init__(self, split: SplitPolicy, arms: Mapping[str, CouponPolicy]) -> None:
        self.split, self.arms, self.name = split, dict(arms), split.name
        self.shadow: dict[int, tuple] = {}  # day: (targets, {arm: choice})

    def grant_coupons(self, viewers: np.ndarray, day: int, market: MarketView) -> CouponGrants:
        first = next(iter(self.arms.values()))
        targets = first.targets_of(viewers, day, market)
        self.shadow[day] = (targets, {a: p.chooser.choose(targets, day)[0]
                                      for a, p in self.arms.items()})  # fmt: skip
        return self.split.grant_coupons(viewers, day, market)

    def recommend(self, requests: Requests, market: MarketView) -> Slates:
        return self.split.recommend(requests, market)

    def notify(self, triggers, market):
        return self.split.notify(triggers, market)

    def observe(self, logs: dict[str, pd.DataFrame]) -> None:
        self.split.observe(logs)


def run_ab(
    config: MarketConfig,
    arms: Mapping[str, CouponPolicy],
    days: int,
    out_dir: str | Path,
    *,
    salt: str = "coupons",
    experiment: Experiment | None = None,
) -> dict:
    """Run the A/B over ``days`` market days from ``config.start_day`` (``experiment``: the
    split, by default half and half by viewer); estimates per metric with their intervals
    beside the true effects. The market's logs and exposures stay in ``out_dir``."""
    experiment = experiment or Experiment("coupons", {"control": 0.5, "treatment": 0.5},
                                          salt=salt)  # fmt: skip
    return ab_in_market(Market(config, Path(out_dir)), arms, days, experiment)


def ab_in_market(market: Market, arms: Mapping[str, CouponPolicy], days: int,
                 experiment: Experiment) -> dict:  # fmt: skip
    """``run_ab`` in an opened market (its ``config.start_day`` on)."""
    if list(arms) != list(ARMS):
        raise ValueError(f"coupon A/B: arms {list(arms)}, expected {list(ARMS)}")
    if experiment.unit != "viewer" or list(experiment.arm_names) != list(ARMS):
        raise ValueError(f"coupon A/B: viewers split into {list(ARMS)}; got unit "
                         f"{experiment.unit!r}, arms {list(experiment.arm_names)}")  # fmt: skip
    config = market.config
    split = SplitPolicy(experiment, arms, out_dir=market.out, counterfactual=False)
    policy = _Shadowed(split, arms)
    market.run(policy, days=days, progress=True)
    users = market.frames["users"]["user_id"].to_numpy(np.int64)
    span = range(config.start_day, config.start_day + days)
    observed, truth = _per_viewer(market, policy, users, span)
    observed["arm"] = np.asarray(ARMS, dtype=object)[np.maximum(experiment.assign(users), 0)]
    table = analyse(observed, [Metric(m, m) for m in METRICS], arms=list(ARMS))
    out = {"days": days, "start_day": config.start_day,
           "viewers": observed["arm"].value_counts().to_dict(), "metrics": {}}  # fmt: skip
    for row in table.itertuples():
        true = float(truth[row.metric])
        out["metrics"][row.metric] = {
            "estimate": float(row.diff), "low": float(row.ci_lo), "high": float(row.ci_hi),
            "p_value": float(row.p_value), "true_effect": true,
            "covered": bool(row.ci_lo <= true <= row.ci_hi),
        }  # fmt: skip
    return out


def _per_viewer(market: Market, policy: _Shadowed, users: np.ndarray, days: Sequence[int]):
    """(observed gmv, cost, net per viewer summed over days; true effect per metric)."""
    observed = pd.DataFrame(0.0, index=users, columns=list(METRICS))
    true = {m: np.zeros(len(users)) for m in METRICS}
    catalogue = market.config.catalogue
    for day in days:
        logs = market.read_day(day)
        o = day_outcomes(logs, users)
        observed["gmv"] += o["gmv"].to_numpy()
        observed["cost"] += o["cost"].to_numpy()
        targets, choices = policy.shadow[day]
        effects = true_effects(market.truth, day_cards(logs), catalogue, targets,
                               market.world.config.chunk_window(day)[0],
                               market.config.response)  # fmt: skip
        row = pd.Index(targets.user_id).get_indexer(users)
        sign = {"control": -1.0, "treatment": 1.0}
        for arm, choice in choices.items():
            c = choice[row]
            has = c >= 0
            for name, a in (("gmv", effects.gmv), ("cost", effects.cost)):
                true[name][has] += sign[arm] * a[row[has], c[has]]
    observed["net"] = observed["gmv"] - observed["cost"]
    true["net"] = true["gmv"] - true["cost"]
    return observed.reset_index(names="user_id"), {m: float(v.mean()) for m, v in true.items()}
