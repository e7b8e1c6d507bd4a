"""Budgeted coupon allocation: a multiple-choice knapsack solved through its Lagrangian dual.

Each viewer gets at most one tier. Tier j of viewer i is worth ``value[i, j]`` (incremental GMV)
and costs ``cost[i, j]`` (expected redeemed face value); the day's budget bounds the total
cost. With a price ``lam`` on a yuan, every viewer independently takes the tier maximising
``value - lam * cost`` if that is positive; total spend falls as ``lam`` rises, so bisection
finds the smallest ``lam`` whose spend fits the budget, and the viewers who would join at a
slightly lower price are then added greedily (best marginal value per yuan first) while the
budget allows. The spend never exceeds the budget.

Eligibility: a tier must be offered to the viewer, clear the ROI floor
(``value >= roi_floor * cost``) and cost at most ``max_cost_per_user``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_COUPON = -1


@dataclass(frozen=True)
class Allocation:
    choice: np.ndarray  # (n,) tier index, NO_COUPON for none
    lam: float  # the price of a yuan at which the budget binds (0: it does not)
    spend: float  # total cost of the chosen tiers
    value: float  # total value of the chosen tiers


@dataclass(frozen=True)
class AllocationRules:
    roi_floor: float = 0.0  # a tier must bring at least this much value per yuan of cost
    max_cost_per_user: float = float("inf")

    def __post_init__(self) -> None:
        if self.roi_floor < 0 or not self.max_cost_per_user > 0:
            raise ValueError(f"allocation rules: roi_floor must be >= 0 and max_cost_per_user "
                             f"> 0, got {self.roi_floor}, {self.max_cost_per_user}")  # fmt: skip


def check_inputs(value, cost, offered, budget) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    value, cost = np.asarray(value, np.float64), np.asarray(cost, np.float64)
    offered = np.ones(value.shape, bool) if offered is None else np.asarray(offered, bool)
    if value.ndim != 2 or value.shape != cost.shape or value.shape != offered.shape:
        raise ValueError(f"allocation: value, cost and offered must be (n, K) arrays of one "
                         f"shape, got {value.shape}, {cost.shape}, {offered.shape}")  # fmt: skip
    if not (np.isfinite(value).all() and np.isfinite(cost).all()):
        raise ValueError("allocation: value and cost must be finite")
    if (cost < 0).any():
        i, j = np.argwhere(cost < 0)[0]
        raise ValueError(f"allocation: negative cost {cost[i, j]} for viewer row {i}, tier {j}")
    if not (np.isfinite(budget) and budget > 0):
        raise ValueError(f"allocation: the budget must be a positive number, got {budget}")
    return value, cost, offered


def eligible(value, cost, offered, rules: AllocationRules) -> np.ndarray:
    """(n, K) tiers a viewer may get: offered, worth something, above the ROI floor, under the
    per-viewer cap."""
    return (offered & (value > 0) & (value >= rules.roi_floor * cost)
            & (cost <= rules.max_cost_per_user))  # fmt: skip


def choose_at(value: np.ndarray, cost: np.ndarray, ok: np.ndarray, lam: float) -> np.ndarray:
    """Each viewer's best tier at price ``lam`` (``NO_COUPON`` where none gains)."""
    if value.shape[1] == 0:
        return np.full(len(value), NO_COUPON)
    net = np.where(ok, value - lam * cost, -np.inf)
    best = net.argmax(axis=1)
    return np.where(net[np.arange(len(net)), best] > 0, best, NO_COUPON)


def _total(a: np.ndarray, choice: np.ndarray) -> float:
    rows = np.flatnonzero(choice >= 0)
    return float(a[rows, choice[rows]].sum())


def allocate(
    value,
    cost,
    budget: float,
    offered=None,
    rules: AllocationRules | None = None,
    *,
    iterations: int = 60,
) -> Allocation:
    """The allocation of at most one tier per viewer maximising value with spend <= budget."""
    value, cost, offered = check_inputs(value, cost, offered, budget)
    ok = eligible(value, cost, offered, rules or AllocationRules())
    choice = choose_at(value, cost, ok, 0.0)
    if _total(cost, choice) <= budget:
        return Allocation(choice, 0.0, _total(cost, choice), _total(value, choice))
    ratio = np.where(ok & (cost > 0), value / np.maximum(cost, 1e-300), 0.0)
    lo, hi = 0.0, float(ratio.max()) + 1.0
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if _total(cost, choose_at(value, cost, ok, mid)) <= budget:
            hi = mid
        else:
            lo = mid
    choice = _fill(value, cost, choose_at(value, cost, ok, hi), choose_at(value, cost, ok, lo),
                   budget)  # fmt: skip
    return Allocation(choice, hi, _total(cost, choice), _total(value, choice))


def _fill(value, cost, feasible: np.ndarray, richer: np.ndarray, budget: float) -> np.ndarray:
    """``feasible`` moved towards ``richer`` viewer by viewer, best extra value per extra yuan
    first, while the spend stays within the budget."""
    out = feasible.copy()
    spend = _total(cost, out)
    rows = np.flatnonzero(richer != feasible)
    n = np.arange(len(value))

    def at(a, c):
        return np.where(c >= 0, a[n, np.maximum(c, 0)], 0.0)

    d_value = (at(value, richer) - at(value, feasible))[rows]
    d_cost = (at(cost, richer) - at(cost, feasible))[rows]
    order = np.argsort(-d_value / np.maximum(d_cost, 1e-12), kind="stable")
    for r, dv, dc in zip(rows[order], d_value[order], d_cost[order], strict=True):
        # A hair under the budget: the running sum and the final sum round differently.
        if dv > 0 and spend + dc <= budget * (1.0 - 1e-12):
            out[r], spend = richer[r], spend + dc
    return out
