"""Multi-treatment uplift models: per viewer and tier, the incremental value of a coupon.

The data are randomised grants (``grants.RandomisedChooser``): each row a viewer-day with its
features, its arm (-1 none, else the tier index), the arm's propensity, which tiers its viewer
was offered and an outcome (incremental GMV and incremental cost are two fits of the same
learner). A room or product coupon is only offered to viewers with a favourite room or an
unbought product, who are more active than the rest, so each tier's effect is learned from the
viewers offered it alone: its treated rows against the control rows of those viewers (compared
with every control row, the tier's effect would absorb the difference between the two groups).
Three meta-learners over one base regression, all behind ``fit_uplift(kind, ...)``:

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
    """Per tier, a model of its effect (a regression, or a difference of two for ``t``)."""

    kind: str
    effects: tuple

    @property
    def n_tiers(self) -> int:
        return len(self.effects)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, n_tiers) predicted effect of each tier."""
        x = np.asarray(x, dtype=np.float64)
        return np.column_stack([m.predict(x) for m in self.effects])


@dataclass(frozen=True)
class _Difference:
    """T-learner: the tier's outcome model minus the control's (on viewers offered the tier)."""

    treated: Ridge
    control: Ridge

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.treated.predict(x) - self.control.predict(x)


@dataclass(frozen=True)
class _Blend:
    """X-learner blend ``g tau0 + (1 - g) tau1`` (g: the tier's share of its two arms)."""

    tau0: Ridge
    tau1: Ridge
    g: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.g * self.tau0.predict(x) + (1.0 - self.g) * self.tau1.predict(x)


def _check(x, arm, propensity, y, offered) -> None:
    n, k = offered.shape
    if not (len(x) == len(arm) == len(propensity) == len(y) == n):
        raise ValueError("uplift data: x, arm, propensity, y and offered differ in length")
    if not np.isfinite(x).all() or not np.isfinite(y).all():
        raise ValueError("uplift data: features and outcomes must be finite")
    if ((propensity <= 0) | (propensity > 1)).any():
        raise ValueError("uplift data: propensities must lie in (0, 1]")
    if ((arm < -1) | (arm >= k)).any():
        raise ValueError(f"uplift data: arms must lie in -1 (none) .. {k - 1}")
    granted = np.flatnonzero(arm >= 0)
    if not offered[granted, arm[granted]].all():
        row = int(granted[~offered[granted, arm[granted]]][0])
        raise ValueError(f"uplift data: row {row} got tier {arm[row]}, not offered to it")
    for j in range(k):
        treated, control = (arm == j).sum(), ((arm == -1) & offered[:, j]).sum()
        if treated < 2 or control < 2:
            raise ValueError(f"uplift data: tier {j} has {treated} treated and {control} "
                             f"control rows among the viewers offered it; each needs at least "
                             f"2")  # fmt: skip


def _dr_tier(x, w, arm, e, y, j, base, seed):
    """Tier j's cross-fitted AIPW pseudo-outcomes over the rows offered it (nuisances on x and
    w), regressed on x."""
    xw = x if w is None else np.hstack([x, w])
    fold = np.random.default_rng(seed).integers(0, 2, len(x))
    mu = np.zeros((len(x), 2))  # control, tier
    for f in (0, 1):
        fit, out = fold != f, fold == f
        for col, a in enumerate((-1, j)):
            rows = fit & (arm == a)
            mu[out, col] = base(xw[rows], y[rows]).predict(xw[out])
    phi = (mu[:, 1] - mu[:, 0] + (arm == j) * (y - mu[:, 1]) / e
           - (arm == -1) * (y - mu[:, 0]) / e)  # fmt: skip
    return base(x, phi)


def _fit_tier(kind, x, w, arm, e, y, j, base, seed):
    """The effect model of tier j from the rows of viewers it was offered to."""
    treated, control = arm == j, arm == -1
    if kind == "dr":
        return _dr_tier(x, w, arm, e, y, j, base, seed)
    mu1, mu0 = base(x[treated], y[treated]), base(x[control], y[control])
    if kind == "t":
        return _Difference(mu1, mu0)
    tau1 = base(x[treated], y[treated] - mu0.predict(x[treated]))
    tau0 = base(x[control], mu1.predict(x[control]) - y[control])
    g = treated.sum() / (treated.sum() + control.sum())  # weight of the control's fit
    return _Blend(tau0, tau1, float(g))


def fit_uplift(
    kind: str,
    x: np.ndarray,
    arm: np.ndarray,
    propensity: np.ndarray,
    y: np.ndarray,
    n_tiers: int,
    *,
    offered: np.ndarray | None = None,
    alpha: float = 30.0,
    quadratic: bool = True,
    exposure: np.ndarray | None = None,
    seed: int = 0,
) -> UpliftModel:
    """An uplift model of ``kind`` (``t``, ``x`` or ``dr``) for ``n_tiers`` tiers; ``offered``
    (n, n_tiers): which tiers each row's viewer could have drawn (default: all)."""
    if kind not in KINDS:
        raise ValueError(f"uplift learner {kind!r}: one of {KINDS}")
    if exposure is not None and (kind != "dr" or len(exposure) != len(x)):
        raise ValueError("uplift data: exposure covariates are read by the dr learner only, one "
                         "row per row of x")  # fmt: skip
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    arm, e = np.asarray(arm, np.int64), np.asarray(propensity, np.float64)
    offered = np.ones((len(x), n_tiers), bool) if offered is None else np.asarray(offered, bool)
    if offered.shape != (len(x), n_tiers):
        raise ValueError(f"uplift data: offered must be ({len(x)}, {n_tiers}), got "
                         f"{offered.shape}")  # fmt: skip
    _check(x, arm, e, y, offered)
    base = partial(Ridge.fit, alpha=alpha, quadratic=quadratic)
    w = None if exposure is None else np.asarray(exposure, np.float64)
    effects = []
    for j in range(n_tiers):
        rows = offered[:, j]
        effects.append(_fit_tier(kind, x[rows], None if w is None else w[rows], arm[rows],
                                 e[rows], y[rows], j, base, seed))  # fmt: skip
    return UpliftModel(kind, tuple(effects))


def fit_per_tier(kind: str, x: np.ndarray, y: np.ndarray, offered: np.ndarray,
                 alpha: float) -> UpliftModel:  # fmt: skip
    """Effects already estimated per row and tier, ``y`` (n, K), regressed on ``x`` over the
    rows offered each tier: the last stage of learners that impute effects row by row."""
    per_tier = []
    for j in range(y.shape[1]):
        on = offered[:, j]
        if on.sum() < 2:
            raise ValueError(f"uplift learner {kind}: tier {j} offered on {int(on.sum())} rows; "
                             f"at least 2 needed")  # fmt: skip
        per_tier.append(Ridge.fit(x[on], y[on, j], alpha))
    return UpliftModel(kind, tuple(per_tier))


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
