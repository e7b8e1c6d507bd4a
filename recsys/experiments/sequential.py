"""Always-valid inference for a difference in means, so a team may look every day.

A fixed-horizon 95% interval covers the truth 95% of the time *at one pre-planned look*. Checked
daily and stopped at the first significant day, an A/A test is declared a win far more often
than 5% (about a fifth of the time over 14 looks). The asymptotic confidence sequence of
Waudby-Smith, Arnold, Wu, Ramdas & Lindon (2023, "Time-uniform central limit theory and
asymptotic confidence sequences", eq. 9; the one GrowthBook's ``gbstats`` uses) is instead
valid uniformly over time: the probability that it *ever* excludes the true difference is at
most ``alpha``, asymptotically, however often and whenever it is looked at.

At ``n`` units in all (both arms) with per-unit variance ``s2 = n Var(diff)``, its half-width is

    sqrt(s2) * sqrt( 2 (n rho^2 + 1) / (n rho)^2 * log( sqrt(n rho^2 + 1) / alpha ) )

**Tuning parameter** ``tuning`` (GrowthBook's "sequential tuning parameter", default 5,000): the
number of units ``N`` at which the sequence is tightest, through
``rho = sqrt((-2 log alpha + log(-2 log alpha + 1)) / N)`` (eq. 161). Set it near the total
number of units expected when the experiment is read. Any choice keeps the guarantee; only the
width at a given ``n`` changes: at ``n = N`` and alpha 0.05 the boundary is |z| = 3.03, 1.55
times the fixed-horizon 1.96 (the price of looking at any time); far below ``N`` it is much
higher, and above ``N`` it grows slowly, like sqrt(log n).

``z_boundary`` gives that critical |diff / se| at ``n`` units; ``boundary`` tabulates it over
looks beside the naive 1.96, and ``sequential`` turns an ``Estimate`` into its always-valid
version.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from scipy import stats

from recsys.experiments.analysis import Estimate

TUNING = 5_000.0


def mixing_rho(alpha: float = 0.05, tuning: float = TUNING) -> float:
    """The mixing parameter rho that makes the sequence tightest at ``tuning`` units."""
    if not 0 < alpha < 1 or tuning <= 0:
        raise ValueError(f"alpha must be in (0, 1) and tuning > 0, got {alpha}, {tuning}")
    log_a = np.log(alpha)
    return float(np.sqrt((-2 * log_a + np.log(-2 * log_a + 1)) / tuning))


def z_boundary(n: np.ndarray | float, alpha: float = 0.05, tuning: float = TUNING) -> np.ndarray:
    """The critical |diff / se| at ``n`` units in all (vectorised): half-width / se."""
    n = np.asarray(n, dtype=float)
    rho2 = mixing_rho(alpha, tuning) ** 2
    scale = 2 * (n * rho2 + 1) / (n**2 * rho2) * np.log(np.sqrt(n * rho2 + 1) / alpha)
    return np.sqrt(n * scale)


def halfwidth(
    variance: np.ndarray | float,
    n: np.ndarray | float,
    alpha: float = 0.05,
    tuning: float = TUNING,
) -> np.ndarray:
    """Half-width of the confidence sequence for an estimate with ``variance`` (of the
    estimate, e.g. se^2 of a difference) at ``n`` units in all (vectorised)."""
    return np.sqrt(np.asarray(variance, dtype=float)) * z_boundary(n, alpha, tuning)


def always_valid_p(
    diff: np.ndarray | float,
    variance: np.ndarray | float,
    n: np.ndarray | float,
    alpha: float = 0.05,
    tuning: float = TUNING,
) -> np.ndarray:
    """The smallest level at which the sequence (rho fixed by ``alpha`` and ``tuning``)
    excludes 0 at this look; take the running minimum over looks for the sequential p-value."""
    n = np.asarray(n, dtype=float)
    rho2 = mixing_rho(alpha, tuning) ** 2
    z2 = np.asarray(diff, dtype=float) ** 2 / np.asarray(variance, dtype=float)
    log_p = 0.5 * np.log(n * rho2 + 1) - z2 * n * rho2 / (2 * (n * rho2 + 1))
    return np.minimum(1.0, np.exp(log_p))


def sequential(estimate: Estimate, alpha: float = 0.05, tuning: float = TUNING) -> Estimate:
    """``estimate`` with its interval and p-value replaced by the always-valid ones (the
    relative lift's interval widened by the same factor); not-estimable rows pass through."""
    if not estimate.estimable:
        return estimate
    n = estimate.n_arm + estimate.n_control
    half = float(halfwidth(estimate.se**2, n, alpha, tuning))
    p = float(always_valid_p(estimate.diff, estimate.se**2, n, alpha, tuning))
    out = replace(
        estimate,
        method=estimate.method + "+sequential",
        ci_lo=estimate.diff - half,
        ci_hi=estimate.diff + half,
        p_value=p,
        p_adjusted=float("nan"),
    )
    if estimate.lift_estimable:
        crit = stats.t.ppf(1 - alpha / 2, estimate.df)
        scale = half / (crit * estimate.se)
        width = (estimate.lift_hi - estimate.lift_lo) / 2 * scale
        out = replace(out, lift_lo=estimate.lift - width, lift_hi=estimate.lift + width)
    return out


def boundary(
    n_by_look: np.ndarray | list[float], alpha: float = 0.05, tuning: float = TUNING
) -> pd.DataFrame:
    """The rejection boundary over looks: ``look`` (1-based), ``n`` (units in all so far),
    ``z_sequential`` (|diff / se| needed now) and ``z_fixed`` (the naive fixed-horizon one)."""
    n = np.asarray(n_by_look, dtype=float)
    return pd.DataFrame(
        {
            "look": np.arange(1, len(n) + 1),
            "n": n,
            "z_sequential": z_boundary(n, alpha, tuning),
            "z_fixed": stats.norm.isf(alpha / 2),
        }
    )
