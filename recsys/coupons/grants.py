"""Coupon decisions in the market: a slate policy plus a chooser of one tier (or none) per viewer.

``CouponPolicy`` answers requests with its slate policy (which never reads wallets, so a day's
cards are the same whatever coupons are granted) and, at the start of each day, asks its
chooser for each viewer's tier among those offered to them (``catalogue.day_targets`` over the
events it has observed). Every day's decisions are kept in ``decisions``: viewer, day, arm
(tier name or ``none``), the propensity of that arm (randomised choosers) and the target.

Choosers:

* ``RandomisedChooser``: each viewer's arm drawn from configured propensities, renormalised over
  the tiers offered to them (the training data of the uplift models);
* ``FixedChooser``: an allocation decided beforehand per (day, viewer), e.g. by
  ``allocate.allocate`` from predicted, rule or true effects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from recsys.coupons.catalogue import Targets, day_targets
from recsys.market.coupons import CouponCatalogue
from recsys.market.policy import CouponGrants, MarketView, Policy, Requests, Slates

NONE = "none"
DECISION_COLUMNS = ("user_id", "day", "arm", "propensity", "target_id")
TARGET_EVENTS = ("enter", "click", "cart", "purchase")
TARGET_COLUMNS = ("ts", "user_id", "event_type", "session_id", "streamer_id", "product_id")


class RandomisedChooser:
    """Arms drawn per viewer with ``propensities`` (``none`` and tier names, summing to 1)."""

    def __init__(self, catalogue: CouponCatalogue, propensities: Mapping[str, float], seed: int):
        names = [NONE, *[t.name for t in catalogue.tiers]]
        if sorted(propensities) != sorted(names):
            raise ValueError(f"randomised grants: propensities for {sorted(propensities)}, "
                             f"the arms are {names}")  # fmt: skip
        p = np.array([float(propensities[a]) for a in names])
        if (p < 0).any() or abs(p.sum() - 1.0) > 1e-9 or p[0] <= 0:
            given = dict(zip(names, p.tolist(), strict=True))
            raise ValueError(f"randomised grants: propensities {given} must be >= 0, sum to 1 "
                             f"and give 'none' a share")  # fmt: skip
        self.p, self.rng = p, np.random.default_rng(seed)

    def choose(self, targets: Targets, day: int) -> tuple[np.ndarray, np.ndarray]:
        """(arm per viewer: -1 none, else tier index; its propensity)."""
        weights = self.p[None, :] * np.column_stack([np.ones(len(targets.user_id), bool),
                                                     targets.offered])  # fmt: skip
        weights /= weights.sum(axis=1, keepdims=True)
        u = self.rng.random(len(weights))[:, None]
        arm = (u > np.cumsum(weights, axis=1)).sum(axis=1).clip(max=weights.shape[1] - 1)
        return arm - 1, weights[np.arange(len(arm)), arm]


class FixedChooser:
    """Tiers decided beforehand: ``plan[day]`` maps viewer id -> tier index (others: none)."""

    def __init__(self, plan: Mapping[int, pd.Series]):
        self.plan = plan

    def choose(self, targets: Targets, day: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = self.plan.get(day, pd.Series(dtype=np.int64))
        arm = chosen.reindex(targets.user_id).fillna(-1).to_numpy(np.int64)
        rows = np.flatnonzero(arm >= 0)
        refused = rows[~targets.offered[rows, arm[rows]]]
        if len(refused):
            i = int(refused[0])
            raise ValueError(f"coupon plan day {day}: viewer {targets.user_id[i]} gets tier "
                             f"{arm[i]}, not offered: {targets.why[i, arm[i]]}")  # fmt: skip
        return arm, np.ones(len(arm))


class CouponPolicy(Policy):
    """``slates`` answers requests; ``chooser`` grants one tier or none per viewer each day."""

    def __init__(
        self,
        slates: Policy,
        chooser: RandomisedChooser | FixedChooser,
        catalogue: CouponCatalogue,
        day_window: Callable[[int], tuple[int, int]],
        history: Sequence[pd.DataFrame] = (),
        name: str = "coupons",
    ) -> None:
        self.slates, self.chooser, self.catalogue = slates, chooser, catalogue
        self.day_window, self.name = day_window, name
        self.history = None
        for events in history:
            self.observe({"events": events})
        self.decisions: list[pd.DataFrame] = []
        self.targets: dict[int, Targets] = {}

    def recommend(self, requests: Requests, market: MarketView) -> Slates:
        return self.slates.recommend(requests, market)

    def targets_of(self, viewers: np.ndarray, day: int, market: MarketView) -> Targets:
        start, end = self.day_window(day)
        shelf = market.shelf
        shelf = shelf.loc[(shelf["start_ts"] < end) & (shelf["end_ts"] > start)]
        history = self.history if self.history is not None else _empty_events()
        return day_targets(self.catalogue, viewers, history, shelf, market.price)

    def grant_coupons(self, viewers: np.ndarray, day: int, market: MarketView) -> CouponGrants:
        targets = self.targets_of(viewers, day, market)
        self.targets[day] = targets
        arm, propensity = self.chooser.choose(targets, day)
        rows = np.flatnonzero(arm >= 0)
        names = np.array([t.name for t in self.catalogue.tiers], dtype=object)
        target = np.where(arm >= 0, targets.target[np.arange(len(arm)), arm.clip(min=0)], -1)
        scope = np.array([t.scope for t in self.catalogue.tiers], dtype=object)
        target = np.where((arm >= 0) & (scope[arm.clip(min=0)] == "order"), -1, target)
        self.decisions.append(pd.DataFrame({
            "user_id": targets.user_id, "day": day,
            "arm": np.where(arm >= 0, names[arm.clip(min=0)], NONE), "propensity": propensity,
            "target_id": target}, columns=list(DECISION_COLUMNS)))  # fmt: skip
        return CouponGrants(targets.user_id[rows], names[arm[rows]], target[rows])

    def observe(self, logs: dict[str, pd.DataFrame]) -> None:
        if "requests" in logs:  # a market day (the history handed over holds only events)
            self.slates.observe(logs)
        # Targets read only visits, clicks, carts and purchases: the rest is not kept.
        events = logs["events"]
        events = events.loc[events["event_type"].isin(TARGET_EVENTS), list(TARGET_COLUMNS)]
        parts = [events] if self.history is None else [self.history, events]
        self.history = pd.concat(parts, ignore_index=True)

    def decision_table(self) -> pd.DataFrame:
        return pd.concat(self.decisions, ignore_index=True) if self.decisions else pd.DataFrame(
            columns=list(DECISION_COLUMNS))  # fmt: skip


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object" if c == "event_type" else "Int64")
                         for c in TARGET_COLUMNS})  # fmt: skip
