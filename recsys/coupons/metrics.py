"""How good the uplift ranking and an allocation are.

* ``qini_auuc``: on randomised rows of one tier and the control, the Qini curve
  ``Q(i) = Y_t(i) - Y_c(i) N_t(i) / N_c(i)`` and the cumulative gain curve
  ``G(i) = (mean_t(i) - mean_c(i)) i`` over the top ``i`` rows by score. ``qini`` is the area
  between Q and the random line, as a share of the same area for a ranking by the true
  effect; ``auuc`` the mean of ``G`` over its end point (0.5 for a random ranking).
* ``truth_auuc``: the noise-free version: the true effect gathered by the top rows of the
  ranking, summed over cut-offs, as a share of what the true ranking gathers.
* ``ratio_interval``: a ratio of sums over viewers (incremental GMV per yuan) with a bootstrap
  interval over viewers (paired when two allocations are compared on the same viewers).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def _curves(score: np.ndarray, treated: np.ndarray, y: np.ndarray):
    order = np.argsort(-score, kind="stable")
    t, y = treated[order], y[order]
    n_t, n_c = np.cumsum(t), np.cumsum(~t)
    y_t, y_c = np.cumsum(np.where(t, y, 0.0)), np.cumsum(np.where(t, 0.0, y))
    ok = (n_t > 0) & (n_c > 0)
    qini = np.where(ok, y_t - y_c * n_t / np.maximum(n_c, 1), 0.0)
    i = np.arange(1, len(y) + 1)
    gain = np.where(ok, (y_t / np.maximum(n_t, 1) - y_c / np.maximum(n_c, 1)) * i, 0.0)
    return qini, gain


def _area_above_random(curve: np.ndarray) -> float:
    n = len(curve)
    return float(np.mean(curve - np.arange(1, n + 1) / n * curve[-1]))


def qini_auuc(score, treated, y, true_effect) -> dict:
    """Qini (share of the true ranking's) and AUUC of ``score`` on randomised rows."""
    score, y = np.asarray(score, float), np.asarray(y, float)
    treated = np.asarray(treated, bool)
    if not (treated.any() and (~treated).any()):
        raise ValueError("qini: needs treated and control rows")
    qini, gain = _curves(score, treated, y)
    best, _ = _curves(np.asarray(true_effect, float), treated, y)
    # A tier whose true effect never varies has no ranking to share in.
    ideal = _area_above_random(best) if np.ptp(true_effect) > 0 else 0.0
    return {
        "qini": _area_above_random(qini) / ideal if ideal > 0 else float("nan"),
        "qini_area": _area_above_random(qini) / len(y),
        "auuc": float(gain.mean() / gain[-1]) if gain[-1] > 0 else float("nan"),
        "rows": int(len(y)),
    }


def truth_auuc(score, true_effect) -> float:
    """True effect gathered by ``score``'s ranking over all cut-offs, over the true ranking's
    (1: as good as knowing the truth; about 0.5 + a little for a random one)."""
    score, true_effect = np.asarray(score, float), np.asarray(true_effect, float)
    got = np.cumsum(true_effect[np.argsort(-score, kind="stable")]).sum()
    best = np.cumsum(np.sort(true_effect)[::-1]).sum()
    return float(got / best) if best > 0 else float("nan")


def correlations(pred, truth) -> dict:
    """Pearson and Spearman correlation (NaN where either side is constant: a tier that never
    matters has no ranking to judge)."""
    pred, truth = np.asarray(pred, float), np.asarray(truth, float)
    if len(pred) < 2 or np.ptp(pred) == 0 or np.ptp(truth) == 0:
        return {"pearson": float("nan"), "spearman": float("nan")}
    return {"pearson": float(stats.pearsonr(pred, truth)[0]),
            "spearman": float(stats.spearmanr(pred, truth)[0])}  # fmt: skip


def ratio_interval(num, den, *, level: float = 0.95, draws: int = 2000, seed: int = 0) -> dict:
    """sum(num) / sum(den) over viewers, with a percentile bootstrap interval over viewers."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), (draws, len(num)))
    boot = num[idx].sum(axis=1) / np.maximum(den[idx].sum(axis=1), 1e-12)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    value = float(num.sum() / den.sum()) if den.sum() > 0 else float("nan")
    return {"value": value, "low": float(lo), "high": float(hi)}


def ratio_of_ratios(num_a, den_a, num_b, den_b, *, level=0.95, draws=2000, seed=0) -> dict:
    """(sum num_a / sum den_a) / (sum num_b / sum den_b), a paired bootstrap over viewers."""
    a = [np.asarray(v, float) for v in (num_a, den_a, num_b, den_b)]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a[0]), (draws, len(a[0])))
    s = [v[idx].sum(axis=1) for v in a]
    boot = (s[0] / np.maximum(s[1], 1e-12)) / np.maximum(s[2] / np.maximum(s[3], 1e-12), 1e-12)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    value = (a[0].sum() / a[1].sum()) / (a[2].sum() / a[3].sum())
    return {"value": float(value), "low": float(lo), "high": float(hi)}
