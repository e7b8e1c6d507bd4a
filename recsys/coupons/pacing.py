"""Online pacing: decide viewers one by one through a day so spend tracks the day's budget.

Viewers arrive in time order and each is decided on arrival at the current price of a yuan
``lam`` (``allocate.choose_at``: the tier maximising ``value - lam * cost``), never beyond the
budget left. The price starts at the dual price of the day's offline allocation over the
expected arrivals (``allocate.allocate``) and a feedback controller moves it after each
decision: spend ahead of the planned curve (``budget`` times the share of the day's expected
arrivals so far) raises the price, spend behind lowers it,
``lam <- lam * exp(gain * (spent - planned) / budget)``. The floor ``lam_min`` keeps a price of
zero from sticking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.coupons.allocate import AllocationRules, check_inputs, choose_at, eligible


@dataclass(frozen=True)
class PacingConfig:
    gain: float = 20.0  # how hard the price reacts to the gap from the planned spend
    lam_min: float = 1e-3

    def __post_init__(self) -> None:
        if self.gain <= 0 or self.lam_min <= 0:
            raise ValueError(f"pacing: gain and lam_min must be > 0, got {self}")


@dataclass(frozen=True)
class PacedDay:
    choice: np.ndarray  # (n,) in arrival order
    spend: float
    value: float
    lam: np.ndarray  # (n,) the price each viewer was decided at
    spent: np.ndarray  # (n,) cumulative spend after each decision


def pace(
    value,
    cost,
    budget: float,
    lam0: float,
    offered=None,
    rules: AllocationRules | None = None,
    planned=None,
    config: PacingConfig | None = None,
) -> PacedDay:
    """Decide viewers in row order (their arrival order); ``planned[i]``: the share of the
    day's budget meant to be spent after viewer ``i`` (default: even over the rows)."""
    value, cost, offered = check_inputs(value, cost, offered, budget)
    config = config or PacingConfig()
    n = len(value)
    plan = np.arange(1, n + 1) / max(n, 1) if planned is None else np.asarray(planned, float)
    if plan.shape != (n,) or (np.diff(plan) < 0).any() or not 0 <= plan.min(initial=0) <= 1:
        raise ValueError("pacing: planned must be one non-decreasing share in [0, 1] per viewer")
    ok = eligible(value, cost, offered, rules or AllocationRules())
    choice, lams, spent = np.full(n, -1), np.zeros(n), np.zeros(n)
    lam, spend, gained = max(float(lam0), config.lam_min), 0.0, 0.0
    for i in range(n):
        fits = ok[i : i + 1] & (cost[i : i + 1] <= budget - spend)
        c = choose_at(value[i : i + 1], cost[i : i + 1], fits, lam)[0]
        if c >= 0:
            choice[i] = c
            spend, gained = spend + cost[i, c], gained + value[i, c]
        lams[i], spent[i] = lam, spend
        lam = max(config.lam_min, lam * np.exp(config.gain * (spend - plan[i] * budget) / budget))
    return PacedDay(choice, spend, gained, lams, spent)
