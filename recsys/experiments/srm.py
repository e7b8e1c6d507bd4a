"""Sample-ratio mismatch: are the arms' unit counts what the configured weights promise?

A mismatch means the assignment or the logging is broken (a redirect that loses some users, a
crash in one arm, bots filtered in one arm only), and then no metric of the experiment can be
trusted. Two checks:

- ``srm_test``: Pearson's chi-square goodness of fit of the counts against the weights
  (``scipy.stats.chisquare``), flagged when ``p < threshold``. It is valid *once*, at the end:
  checked every day it false-alarms more often than its threshold.
- ``sequential_srm``: a Bayes factor of a Dirichlet-multinomial alternative against the
  configured multinomial (Lindon & Malek 2020, "Anytime-valid inference for multinomial count
  data"; the method of GrowthBook's ``gbstats.ssrm``). The factor is a nonnegative martingale
  under the null, so by Ville's inequality ``P(sup_t BF_t >= 1 / alpha) <= alpha``: the
  running minimum of ``1 / BF`` is a p-value valid however often it is looked at. The prior is
  Dirichlet(``concentration`` x weights); a larger concentration (default 10,000, as gbstats)
  puts the prior mass on small imbalances, which suits large experiments.

``srm_power`` is the chi-square test's power against a given true split (noncentral chi-square),
so a team knows which imbalance its traffic can reveal: with ``threshold`` 0.01, a 50.5 / 49.5
split needs about 150,000 units in all to be flagged with 90% power.

The threshold defaults to 0.01 (GrowthBook uses 0.001, Microsoft's ExP 0.0005: stricter
thresholds raise fewer false alarms and need more units to catch a given imbalance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import gammaln, xlogy

SRM_THRESHOLD = 0.01
CONCENTRATION = 10_000.0


@dataclass(frozen=True)
class SrmCheck:
    """The chi-square SRM verdict on one set of counts."""

    counts: tuple[int, ...]
    expected: tuple[float, ...]
    statistic: float
    p_value: float
    flagged: bool
    estimable: bool
    reason: str = ""


def _weights(weights: np.ndarray | list[float]) -> np.ndarray:
    """Positive weights summing to 1 (else a clear error)."""
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or len(w) < 2 or np.any(w <= 0) or abs(w.sum() - 1) > 1e-9:
        raise ValueError(f"SRM: weights must be >= 2 positive shares summing to 1, got {w}")
    return w


def _counts(counts: np.ndarray | list[int], k: int) -> np.ndarray:
    """Nonnegative integer counts with ``k`` arms on the last axis."""
    c = np.asarray(counts)
    if c.shape[-1:] != (k,):
        raise ValueError(f"SRM: counts have shape {c.shape}; the last axis must have {k} arms")
    if np.any(c < 0) or np.any(c != np.floor(c)):
        raise ValueError("SRM: counts must be nonnegative integers")
    return c.astype(float)


def chi2_p_values(counts: np.ndarray, weights: np.ndarray | list[float]) -> np.ndarray:
    """Chi-square p-values of counts ``(..., k)`` against ``weights`` (vectorised over rows;
    a row with no units has p-value 1)."""
    w = _weights(weights)
    c = _counts(counts, len(w))
    total = c.sum(axis=-1, keepdims=True)
    expected = np.maximum(total, 1.0) * w
    result = stats.chisquare(c, expected, axis=-1)
    return np.where(total[..., 0] > 0, result.pvalue, 1.0)


def srm_test(
    counts: np.ndarray | list[int],
    weights: np.ndarray | list[float],
    threshold: float = SRM_THRESHOLD,
) -> SrmCheck:
    """Chi-square test of one experiment's arm counts against its weights."""
    w = _weights(weights)
    c = _counts(counts, len(w))
    if c.ndim != 1:
        raise ValueError("srm_test: one set of counts; use chi2_p_values for many")
    counts_t, total = tuple(int(v) for v in c), c.sum()
    if total == 0:
        nan = float("nan")
        return SrmCheck(counts_t, (0.0,) * len(w), nan, nan, False, False, "no units in any arm")
    stat, p = stats.chisquare(c, total * w)
    expected = tuple(float(e) for e in total * w)
    return SrmCheck(counts_t, expected, float(stat), float(p), bool(p < threshold), True)


def log_bayes_factor(
    counts: np.ndarray, weights: np.ndarray | list[float], concentration: float = CONCENTRATION
) -> np.ndarray:
    """log BF of Dirichlet-multinomial(concentration x weights) against Multinomial(weights) at
    cumulative counts ``(..., k)`` (the multinomial coefficients cancel)."""
    w = _weights(weights)
    c = _counts(counts, len(w))
    a = concentration * w
    n = c.sum(axis=-1)
    log_m1 = gammaln(a.sum()) - gammaln(a.sum() + n) + np.sum(gammaln(a + c) - gammaln(a), -1)
    return log_m1 - np.sum(xlogy(c, w), axis=-1)


def sequential_srm(
    counts_by_look: np.ndarray | list[list[int]],
    weights: np.ndarray | list[float],
    threshold: float = SRM_THRESHOLD,
    concentration: float = CONCENTRATION,
) -> dict[str, np.ndarray]:
    """The anytime-valid SRM check over looks: ``counts_by_look`` ``(..., looks, k)`` are the
    *cumulative* counts at each look. Returns per look ``log_bf``, ``p_value`` (the running
    minimum of 1 / BF, capped at 1) and ``flagged`` (``p_value < threshold``, once flagged
    always flagged)."""
    log_bf = log_bayes_factor(np.asarray(counts_by_look), weights, concentration)
    if log_bf.ndim == 0:
        raise ValueError("sequential_srm: counts need a looks axis before the arms axis")
    p = np.minimum(1.0, np.exp(-np.maximum.accumulate(log_bf, axis=-1)))
    return {"log_bf": log_bf, "p_value": p, "flagged": p < threshold}


def srm_power(
    n_total: int,
    weights: np.ndarray | list[float],
    true_weights: np.ndarray | list[float],
    threshold: float = SRM_THRESHOLD,
) -> float:
    """Power of the chi-square SRM test at ``n_total`` units when the true split is
    ``true_weights`` (noncentral chi-square with ``n sum (q - w)^2 / w``)."""
    w, q = _weights(weights), _weights(true_weights)
    df = len(w) - 1
    ncp = n_total * float(np.sum((q - w) ** 2 / w))
    return float(stats.ncx2.sf(stats.chi2.isf(threshold, df), df, ncp))
