"""Small-sample cluster-robust variance of a ratio of sums: CR2, Bell-McCaffrey degrees of freedom.

An arm's metric ``R = sum(y) / sum(x)`` over its clusters (a room's viewers summed; a unit is a
cluster of one) is the weighted least-squares fit of ``y_i / x_i`` on a constant with weights
``x_i`` (``x_i = 1`` for a mean metric). Cluster ``g``'s block of the hat matrix then has one
non-zero eigenvalue, its leverage ``h_g = x_g / sum(x)``, along its own weights, so the
bias-reduced linearisation of Bell & McCaffrey (2002) (**CR2**: each cluster's residuals
multiplied by ``(I - H_gg)^(-1/2)``) reduces to cluster sums::

    Var(R) = sum_g e_g^2 / (1 - h_g) / sum(x)^2,    e_g = y_g - R x_g,

unbiased when the rows are independent with variance proportional to their weight (the working
model). CR1's uniform ``G / (G - 1)`` under-corrects when clusters differ in size: the large
ones, whose residuals the fit pulls hardest towards zero, carry most of the variance.

The reference distribution is Student's t with **Bell-McCaffrey** degrees of freedom: the
Satterthwaite approximation of the CR2 variance under the same working model. For one arm
it is ``1 / tr(M^2)`` with ``M = U (I - v v') U``, ``U^2 = diag(h / (1 - h))``, ``v = sqrt(h)``,
which is ``G - 1`` for equal clusters and falls towards the number of clusters that really
carry the denominator (clusters with ``x_g = 0`` add nothing: for AOV only units with orders
count). The difference of two arms combines them in the Welch-Satterthwaite way with the arms'
CR2 variances, so for a mean metric of single units (``h = 1 / n``) the whole is exactly
Welch's test. (Imbens & Kolesar 2016 and Pustejovsky & Tipton 2018 recommend this pair for few
clusters; statsmodels offers CR1 with ``t(G - 1)``, which ignores cluster sizes.) CUPED's
coefficient is treated as known, as in the delta method itself.
"""

from __future__ import annotations

import numpy as np

ONE = 1.0 - 1e-12


def leverages(n: int, x: np.ndarray | None) -> np.ndarray:
    """Each cluster's share ``h_g`` of its arm's denominator (``1 / n`` for a mean metric of
    single units)."""
    if x is None:
        return np.full(n, 1.0 / n)
    return x / x.sum()


def concentrated(h: np.ndarray) -> bool:
    """Whether one cluster holds (all but rounding of) the arm's denominator: no residual
    variation is left to estimate the variance from."""
    return bool(h.max() >= ONE)


def cr2_variance(lin: np.ndarray, h: np.ndarray) -> float:
    """CR2 variance of an arm's estimate from its linearised values (``e_g / mean(x)``, mean
    zero) and leverages."""
    return float(np.sum(lin**2 / (1.0 - h)) / len(lin) ** 2)


def effective_df(h: np.ndarray) -> float:
    """Bell-McCaffrey degrees of freedom of one arm's CR2 variance (``G - 1`` for equal
    clusters)."""
    w = h / (1.0 - h)
    trace_sq = np.sum(w**2) - 2.0 * np.sum(h * w**2) + np.sum(h * w) ** 2
    return float(np.sum(h) ** 2 / trace_sq) if trace_sq > 0 else np.inf


def welch_df(v_arm: float, v_control: float, df_arm: float, df_control: float) -> float:
    """Welch-Satterthwaite degrees of freedom of the difference of two independent estimates."""
    denom = v_arm**2 / df_arm + v_control**2 / df_control
    return float((v_arm + v_control) ** 2 / denom) if denom > 0 else np.inf
