"""Multi-treatment uplift models: per viewer and tier, the incremental value of a coupon.

The data are randomised grants (``grants.RandomisedChooser``): each row a viewer-day with its
features, its arm (-1 none, else the tier index), the arm's propensity and an outcome
(incremental GMV and incremental cost are two fits of the same learner). Three meta-learners
over one base regression, all behind ``fit_uplift(kind, ...) -> UpliftModel``:

* ``t``: one regression per arm; the effect of tier k is ``mu_k(x) - mu_none(x)``;
* ``x``: the X-learner: imputed effects ``y - mu_none(x)`` on tier k's rows and
  ``mu_k(x) - y`` on the control rows, each regressed on x, blended by the propensity;
* ``dr``: the doubly robust learner: the AIPW pseudo-outcome
  ``mu_k - mu_0 + [a=k](y - mu_k)/e_k - [a=none](y - mu_0)/e_0`` with cross-fitted ``mu``
  (two folds), regressed on x.

``exposure`` (optional, DR only): covariates of the row that the coupon cannot move, such as how
many cards the viewer was shown that day and their prices (the market's arrivals and slates
never read wallets). The nuisance regressions ``mu`` read them beside x, which takes most of
the outcome's day-to-day noise out of the pseudo-outcome; the final regression reads x alone, so
the model still predicts from what is known before the day.

The base regression is ridge on the standardised features, their squares and pairwise products
(closed form, deterministic, milliseconds). causalml offers the same meta-learners but pulls in
xgboost, lightgbm, numba and shap; at this size a closed-form ridge fits in milliseconds.

``monotone_in_face_value`` calibrates effects across tiers where monotonicity is known to hold:
among order-wide tiers without a threshold, a deeper coupon never lowers a viewer's incremental
orders or cost, so each viewer's predictions over those tiers are made non-decreasing in face
value (pool-adjacent-violators).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from recsys.market.coupons import CouponCatalogue

KINDS = ("t", "x", "dr")


@dataclass(frozen=True)
class Ridge:
    """Ridge regression on standardised features, their squares and pairwise products."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    quadratic: bool = True

    def expand(self, z: np.ndarray) -> np.ndarray:
        return _expand(z, self.quadratic)

    @classmethod
    def fit(
        cls, x: np.ndarray, y: np.ndarray, alpha: float = 30.0, quadratic: bool = True
    ) -> Ridge:
        if len(x) < 2:
            raise ValueError(f"uplift base regression: {len(x)} rows; at least 2 needed")
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        phi = _expand((x - mean) / scale, quadratic)
        centre = phi.mean(axis=0)
        a = (phi - centre).T @ (phi - centre) + alpha * np.eye(phi.shape[1])
        coef = np.linalg.solve(a, (phi - centre).T @ (y - y.mean()))
        return cls(mean, scale, coef, float(y.mean() - centre @ coef), quadratic)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.expand((x - self.mean) / self.scale) @ self.coef + self.intercept


def _expand(z: np.ndarray, quadratic: bool) -> np.ndarray:
    if not quadratic:
        return z
    i, j = np.triu_indices(z.shape[1])
    return np.hstack([z, z[:, i] * z[:, j]])


@dataclass(frozen=True)
class UpliftModel:
    """Per tier, a regression of the effect (``effects``) or of the arm's outcome (T-learner)."""

    kind: str
    n_tiers: int
    arms: tuple[Ridge, ...] = ()  # T-learner: none first, then each tier
    effects: tuple[Ridge, ...] = ()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, n_tiers) predicted effect of each tier."""
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "t":
            base = self.arms[0].predict(x)
            return np.column_stack([m.predict(x) - base for m in self.arms[1:]])
        return np.column_stack([m.predict(x) for m in self.effects])


def _check(x: np.ndarray, arm: np.ndarray, propensity: np.ndarray, y: np.ndarray, k: int):
    n = len(x)
    if not (len(arm) == len(propensity) == len(y) == n):
        raise ValueError("uplift data: x, arm, propensity and y differ in length")
    if not np.isfinite(x).all() or not np.isfinite(y).all():
        raise ValueError("uplift data: features and outcomes must be finite")
    if ((propensity <= 0) | (propensity > 1)).any():
        raise ValueError("uplift data: propensities must lie in (0, 1]")
    counts = np.bincount(arm + 1, minlength=k + 1)
    if (counts < 2).any():
        raise ValueError(f"uplift data: arms none, 0..{k - 1} have {counts.tolist()} rows; "
                         f"each needs at least 2")  # fmt: skip


def _dr(x, w, arm, e, y, k, base, seed):
    """Cross-fitted AIPW pseudo-outcomes per tier (nuisances on x and w), each regressed on x."""
    xw = x if w is None else np.hstack([x, w])
    fold = np.random.default_rng(seed).integers(0, 2, len(x))
    mu = np.zeros((len(x), k + 1))
    for f in (0, 1):
        fit, out = fold != f, fold == f
        for a in range(-1, k):
            rows = fit & (arm == a)
            mu[out, a + 1] = base(xw[rows], y[rows]).predict(xw[out])
    control = (arm == -1) * (y - mu[:, 0]) / e
    return tuple(
        base(x, mu[:, j + 1] - mu[:, 0] + (arm == j) * (y - mu[:, j + 1]) / e - control)
        for j in range(k)
    )


def fit_uplift(
    kind: str,
    x: np.ndarray,
    arm: np.ndarray,
    propensity: np.ndarray,
    y: np.ndarray,
    n_tiers: int,
    *,
    alpha: float = 30.0,
    quadratic: bool = True,
    exposure: np.ndarray | None = None,
    seed: int = 0,
) -> UpliftModel:
    """An uplift model of ``kind`` (``t``, ``x`` or ``dr``) for ``n_tiers`` tiers."""
    if kind not in KINDS:
        raise ValueError(f"uplift learner {kind!r}: one of {KINDS}")
    if exposure is not None and (kind != "dr" or len(exposure) != len(x)):
        raise ValueError("uplift data: exposure covariates are read by the dr learner only, one "
                         "row per row of x")  # fmt: skip
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    arm, e = np.asarray(arm, np.int64), np.asarray(propensity, np.float64)
    _check(x, arm, e, y, n_tiers)
    base = partial(Ridge.fit, alpha=alpha, quadratic=quadratic)
    mu = tuple(base(x[arm == a], y[arm == a]) for a in range(-1, n_tiers))
    if kind == "t":
        return UpliftModel("t", n_tiers, arms=mu)
    if kind == "dr":
        return UpliftModel("dr", n_tiers, effects=_dr(x, exposure, arm, e, y, n_tiers, base, seed))
    control = arm == -1
    share_control = control.mean()
    effects = []
    for j in range(n_tiers):
        treated = arm == j
        tau1 = base(x[treated], y[treated] - mu[0].predict(x[treated]))
        tau0 = base(x[control], mu[j + 1].predict(x[control]) - y[control])
        g = treated.mean() / (treated.mean() + share_control)  # weight of the control's fit
        effects.append(_Blend(tau0, tau1, g))
    return UpliftModel("x", n_tiers, effects=tuple(effects))


@dataclass(frozen=True)
class _Blend:
    """X-learner blend ``g tau0 + (1 - g) tau1`` (g: the tier's share of its two arms)."""

    tau0: Ridge
    tau1: Ridge
    g: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.g * self.tau0.predict(x) + (1.0 - self.g) * self.tau1.predict(x)


def monotone_in_face_value(pred: np.ndarray, catalogue: CouponCatalogue) -> np.ndarray:
    """``pred`` (n, K) with each row non-decreasing in face value over the order-wide tiers
    without a threshold (pool-adjacent-violators per row); other tiers unchanged."""
    cols = [j for j, t in enumerate(catalogue.tiers) if t.scope == "order" and not t.threshold]
    cols.sort(key=lambda j: catalogue.tiers[j].face_value)
    out = np.array(pred, dtype=np.float64, copy=True)
    for r in range(len(out)):
        out[r, cols] = _pava(out[r, cols])
    return out


def _pava(v: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to ``v`` in squared error."""
    blocks: list[list[float]] = []  # [sum, count]
    for value in v:
        blocks.append([float(value), 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    return np.concatenate([np.full(int(c), s / c) for s, c in blocks])
