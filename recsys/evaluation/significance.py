"""Paired significance of the difference between two models scored on the same targets.

Pass the per-target values of one metric for both models (``EvalResult.per_user[name]`` from
two runs with the same split, stage, protocol, seed and ``max_users``). Two tests:

* ``ttest``: the paired t-test (``scipy.stats.ttest_rel``); CI of the mean difference from the
  t distribution. Fine for the thousands of targets of a typical evaluation.
* ``randomization``: the paired randomisation test (``scipy.stats.permutation_test`` with
  ``permutation_type="samples"``, i.e. random swaps of a and b within each target); CI of the
  mean difference from a percentile bootstrap. No normality assumption.

When every difference is identical (e.g. a model compared with itself) the t-test and the
bootstrap are degenerate; the CI is then the point [diff, diff] and the t-test's p is exact:
1 for a zero difference, 0 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from recsys.evaluation.metrics import as_numpy

METHODS = ("ttest", "randomization")
# Resampling tests hold (batch, n) floats at once; keep that near 20M values.
_RESAMPLE_CELLS = 20_000_000


@dataclass(frozen=True)
class PairedResult:
    mean_a: float
    mean_b: float
    diff: float  # mean_a - mean_b
    ci_low: float  # confidence interval of diff
    ci_high: float
    p_value: float  # two-sided
    method: str
    n: int

    def summary(self) -> str:
        return (
            f"{self.method}: a={self.mean_a:.4f} b={self.mean_b:.4f} diff={self.diff:+.4f} "
            f"CI=[{self.ci_low:+.4f}, {self.ci_high:+.4f}] p={self.p_value:.3g} n={self.n}"
        )


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    x, y = as_numpy(a, dtype=np.float64).ravel(), as_numpy(b, dtype=np.float64).ravel()
    if len(x) != len(y):
        raise ValueError(f"paired test needs equal lengths, got {len(x)} and {len(y)}")
    if len(x) < 2:
        raise ValueError(f"paired test needs at least 2 pairs, got {len(x)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired test: inputs contain NaN or infinite values")
    return x, y


def _mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def _ttest(x, y, confidence: float) -> tuple[float, float, float]:
    res = stats.ttest_rel(x, y)
    ci = res.confidence_interval(confidence_level=confidence)
    return float(ci.low), float(ci.high), float(res.pvalue)


def _permutation_pvalue(x, y, n_resamples: int, seed: int) -> float:
    res = stats.permutation_test(
        (x, y),
        _mean_diff,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        batch=max(1, _RESAMPLE_CELLS // len(x)),
        rng=np.random.default_rng(seed),
    )
    return float(res.pvalue)


def _bootstrap_ci(d, confidence: float, n_resamples: int, seed: int) -> tuple[float, float]:
    res = stats.bootstrap(
        (d,),
        np.mean,
        n_resamples=n_resamples,
        batch=max(1, _RESAMPLE_CELLS // len(d)),
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_test(
    a,
    b,
    *,
    method: str = "ttest",
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedResult:
    """Two-sided paired test of mean(a) == mean(b); ``a[i]`` and ``b[i]`` share target i."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    x, y = _pair(a, b)
    d = x - y
    diff = float(d.mean())
    if method == "randomization":
        p = _permutation_pvalue(x, y, n_resamples, seed)
    if np.all(d == d[0]):  # no spread: the t statistic and the bootstrap are degenerate
        low = high = diff
        p = (1.0 if diff == 0.0 else 0.0) if method == "ttest" else p
    elif method == "ttest":
        low, high, p = _ttest(x, y, confidence)
    else:
        low, high = _bootstrap_ci(d, confidence, n_resamples, seed)
    return PairedResult(
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        diff=diff,
        ci_low=low,
        ci_high=high,
        p_value=p,
        method=method,
        n=len(x),
    )
