"""Power, minimum detectable effect and sample size of a two-sided difference-in-means test.

The test is Welch's (``analysis.compare``): at ``n_arm`` and ``n_control`` units with standard
deviations ``sd_arm`` and ``sd_control``, the estimate's variance is
``V = sd_arm^2 / n_arm + sd_control^2 / n_control``, its degrees of freedom the
Welch-Satterthwaite ``df = V^2 / (sd_arm^4 / (n_arm^2 (n_arm - 1)) + ...)``, and under a true
difference ``effect`` the statistic follows a noncentral t with ``df`` and noncentrality
``effect / sqrt(V)``, so

    power = P(T > t_crit) + P(T < -t_crit),    t_crit = t_{df}^{-1}(1 - alpha / 2).

With equal arms and standard deviations this is exactly ``statsmodels``' ``TTestIndPower`` (df =
2n - 2). **CUPED** with a covariate correlated ``rho`` with the metric multiplies each standard
deviation by ``sqrt(1 - rho^2)`` (the variance it removes); the degrees of freedom it costs
(one) are ignored. The MDE and the sample size invert the power by root finding (``brentq``).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, stats


def _sds(sd: float, sd_control: float | None, rho: float) -> tuple[float, float]:
    """Both arms' standard deviations after CUPED's variance reduction."""
    if not 0 <= abs(rho) < 1:
        raise ValueError(f"CUPED's rho must be in (-1, 1), got {rho}")
    if sd <= 0 or (sd_control is not None and sd_control <= 0):
        raise ValueError("standard deviations must be positive")
    shrink = np.sqrt(1 - rho**2)
    return sd * shrink, (sd if sd_control is None else sd_control) * shrink


def power(
    effect: float | np.ndarray,
    n_arm: float,
    sd: float,
    alpha: float = 0.05,
    rho: float = 0.0,
    *,
    n_control: float | None = None,
    sd_control: float | None = None,
) -> float | np.ndarray:
    """Probability that Welch's two-sided test at ``alpha`` rejects when the true difference is
    ``effect`` (vectorised over ``effect``); ``n_control`` and ``sd_control`` default to the
    arm's."""
    n_c = n_arm if n_control is None else n_control
    if min(n_arm, n_c) < 2:
        raise ValueError("power: each arm needs at least 2 units")
    s_t, s_c = _sds(sd, sd_control, rho)
    vt, vc = s_t**2 / n_arm, s_c**2 / n_c
    df = (vt + vc) ** 2 / (vt**2 / (n_arm - 1) + vc**2 / (n_c - 1))
    crit = stats.t.isf(alpha / 2, df)
    ncp = np.abs(np.asarray(effect, dtype=float)) / np.sqrt(vt + vc)
    # P(T < -crit) written as the upper tail at -ncp: scipy's far lower tail can be NaN
    out = stats.nct.sf(crit, df, ncp) + stats.nct.sf(crit, df, -ncp)
    return float(out) if out.ndim == 0 else out


def minimum_detectable_effect(
    n_arm: float,
    sd: float,
    alpha: float = 0.05,
    target: float = 0.8,
    rho: float = 0.0,
    *,
    n_control: float | None = None,
    sd_control: float | None = None,
) -> float:
    """The smallest positive true difference detected with probability ``target``."""
    if not alpha / 2 < target < 1:
        raise ValueError(f"target power must be in (alpha / 2, 1), got {target}")
    s_t, s_c = _sds(sd, sd_control, rho)
    n_c = n_arm if n_control is None else n_control
    high = np.sqrt(s_t**2 / n_arm + s_c**2 / n_c)  # one standard error

    def gap(effect: float) -> float:
        return (
            power(effect, n_arm, sd, alpha, rho, n_control=n_control, sd_control=sd_control)
            - target
        )

    while gap(high) < 0:
        high *= 2
    return float(optimize.brentq(gap, 0.0, high, xtol=1e-12 * high))


def sample_size(
    effect: float,
    sd: float,
    alpha: float = 0.05,
    target: float = 0.8,
    rho: float = 0.0,
    *,
    ratio: float = 1.0,
    sd_control: float | None = None,
) -> int:
    """Units per treatment arm (the control gets ``ratio`` times as many) for power ``target``
    at a true difference ``effect``."""
    if effect == 0:
        raise ValueError("sample_size: a zero effect cannot be detected")

    def gap(n: float) -> float:
        return (
            power(abs(effect), n, sd, alpha, rho, n_control=ratio * n, sd_control=sd_control)
            - target
        )

    low = max(2.0, 2.0 / ratio)
    if gap(low) >= 0:
        return int(np.ceil(low))
    high = 2 * low
    while gap(high) < 0:
        low, high = high, 2 * high
    return int(np.ceil(optimize.brentq(gap, low, high, xtol=1e-6)))
