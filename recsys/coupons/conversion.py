"""The conversion learner: a coupon-aware model of P(buy | click), turned into uplift per viewer.

A viewer-day's GMV is a sum over clicks of price times a purchase draw, so its spread (how many
clicks, at what prices) dwarfs a coupon's effect, and learners that regress the day's GMV
(``uplift``: T, X, DR) estimate tier effects of a few yuan to about their own size. The
industrial answer (Meituan's per-coupon CVR curves) models the coupon where it acts, at the
click: here a penalised logistic regression of purchase on the viewer's features, the card's
price and the coupon the viewer held and could use there (its depth ``face / price``),

    logit P(buy | click) = h(x, price) + [held] (a(x) + depth b(x))

with ``h`` linear in the standardised features, the log price and their products, ``a`` and
``b`` linear in the features. Its penalty is chosen from a declared grid by the held-out log
loss of purchases over viewer folds (``select_penalty``): from the logs alone, never from the
planted truth. Which coupon applied at each click is rebuilt from the grants:
the row's tier, in scope, within validity, the price above the face value and the threshold,
and not yet redeemed at an earlier click of the day.

Effects per viewer-day and tier then follow as in the planted truth (``truth.true_effects``),
with the fitted model in place of the planted one and the day's actual clicks in place of the
expected ones: ``q`` with the coupon, ``r`` without, the coupon still held at a click with
``H = prod (1 - q)`` over the applicable clicks before it; incremental GMV ``sum H (q - r)
price``, cost ``face sum H q``. These imputed effects exist for every row whatever its arm (a
day's clicks do not depend on the coupon granted, which ``exposure_balance`` checks), so the
last stage regresses them on the viewer's features over every row offered the tier (``Ridge``,
as the other learners) and predicts from what is known before the day.

The assumption is the market's: a coupon moves conversion, not traffic. Where it also brings
visits, the DR learner, which reads the whole day's outcome, is the one to use.

The same model prices a coupon at one card: ``card_value`` gives, for a viewer hesitating over
a product at a price, the incremental GMV and expected cost of a limited-time coupon on it,
given how often a hesitation is followed by another click on the product in time
(``revisit_gaps``: the logged gaps, ``revisit_probability``). The real-time trigger reads it, so
its decision rests on what the grants taught about conversion, not on day-start grants of a
30-minute coupon, which hardly ever meet a click.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from recsys.coupons.study import GrantData
from recsys.coupons.truth import applies, held_coupon_sums
from recsys.coupons.uplift import UpliftModel, fit_per_tier
from recsys.market.coupons import CouponCatalogue

PENALTIES = (0.3, 3.0, 30.0, 300.0)  # the conversion model's grid (chosen by held-out log loss)


@dataclass(frozen=True)
class ConversionModel:
    """Penalised logistic P(buy | click) with the coupon's term; ``predict_logit`` of clicks."""

    mean: np.ndarray
    scale: np.ndarray
    price_mean: float
    price_scale: float
    coef: np.ndarray

    def design(self, x: np.ndarray, price: np.ndarray, face: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.scale  # (n, F)
        lp = ((np.log(price) - self.price_mean) / self.price_scale)[:, None]  # (n, 1)
        one = np.ones((len(x), 1))
        held = (face > 0).astype(np.float64)[:, None]
        depth = np.minimum(face / price, 1.0)[:, None]
        base = np.hstack([one, z, lp, lp * z])
        coupon = np.hstack([one, z])
        return np.hstack([base, held * coupon, depth * coupon])  # (n, 3F + 2 + 2(F + 1))

    def predict_logit(self, x: np.ndarray, price: np.ndarray, face: np.ndarray) -> np.ndarray:
        return self.design(x, price, face) @ self.coef

    @classmethod
    def fit(
        cls, x: np.ndarray, price: np.ndarray, face: np.ndarray, bought: np.ndarray,
        alpha: float = 1.0,
    ) -> ConversionModel:  # fmt: skip
        if len(x) < 2 or not (bought.any() and (~bought).any()):
            raise ValueError(f"conversion model: {len(x)} clicks, {int(bought.sum())} bought; "
                             f"needs clicks with and without a purchase")  # fmt: skip
        if (price <= 0).any():
            raise ValueError("conversion model: click prices must be > 0")
        scale = x.std(axis=0)
        lp = np.log(price)
        shell = cls(x.mean(axis=0), np.where(scale > 0, scale, 1.0), float(lp.mean()),
                    float(lp.std()) or 1.0, np.zeros(0))  # fmt: skip
        d = shell.design(x, price, face)
        y = bought.astype(np.float64)
        penalty = np.full(d.shape[1], alpha / len(d))
        penalty[0] = 0.0  # the intercept is free

        def loss(w):
            s = d @ w
            value = -np.mean(y * log_expit(s) + (1 - y) * log_expit(-s)) + penalty @ (w * w)
            grad = d.T @ (expit(s) - y) / len(d) + 2 * penalty * w
            return value, grad

        w = minimize(loss, np.zeros(d.shape[1]), jac=True, method="L-BFGS-B",
                     options={"maxiter": 500}).x  # fmt: skip
        return cls(shell.mean, shell.scale, shell.price_mean, shell.price_scale, w)


def log_loss(model: ConversionModel, x, price, face, bought) -> float:
    s = model.predict_logit(x, price, face)
    return float(-np.mean(np.where(bought, log_expit(s), log_expit(-s))))


def select_penalty(
    x: np.ndarray, price: np.ndarray, face: np.ndarray, bought: np.ndarray, viewer: np.ndarray,
    grid: tuple[float, ...], folds: int = 3, seed: int = 0,
) -> tuple[float, dict[float, float]]:  # fmt: skip
    """The penalty of ``grid`` with the lowest held-out log loss over ``folds`` folds of
    viewers, and each penalty's mean held-out log loss."""
    if not grid:
        raise ValueError("conversion model: an empty penalty grid")
    _, inv = np.unique(viewer, return_inverse=True)
    fold = np.random.default_rng(seed).integers(0, folds, inv.max() + 1)[inv]
    scores = {}
    for alpha in grid:
        losses = [log_loss(ConversionModel.fit(x[fold != f], price[fold != f], face[fold != f],
                                               bought[fold != f], alpha),
                           x[fold == f], price[fold == f], face[fold == f], bought[fold == f])
                  for f in range(folds)]  # fmt: skip
        scores[float(alpha)] = float(np.mean(losses))
    return min(scores, key=scores.get), scores


def _grant_ts(data: GrantData, rows: np.ndarray) -> np.ndarray:
    days = data.rows["day"].to_numpy()[rows]
    by_day = pd.Series(data.grant_ts, dtype=np.float64).reindex(days)
    if by_day.isna().any():
        raise ValueError(f"grant data: no grant time for day {int(days[by_day.isna()][0])}")
    return by_day.to_numpy(np.int64)


def applicable_all(data: GrantData, catalogue: CouponCatalogue) -> np.ndarray:
    """(clicks, K) ``applicable`` for every tier."""
    return np.column_stack([applicable(data, catalogue, j) for j in range(len(catalogue.tiers))])


def applicable(data: GrantData, catalogue: CouponCatalogue, j: int) -> np.ndarray:
    """(clicks,) whether tier j's coupon, granted to the click's row, applies to the click."""
    clicks, rows = data.clicks, data.clicks["row"].to_numpy()
    tier = catalogue.tiers[j]
    offered = data.offered[rows, j]
    target = np.where(offered, 0 if tier.scope == "order" else data.target[rows, j], -1)
    ts = clicks["ts"].to_numpy(np.int64)
    start = _grant_ts(data, rows)
    # applies() takes one grant time: each click is shifted by its own day's instead
    return applies(tier, clicks.assign(ts=ts - start), target, 0)


def held_face(data: GrantData, catalogue: CouponCatalogue,
              ok: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """(clicks,) the face value of the granted coupon usable at each click (0: none): the row's
    tier applies there and was not redeemed at an earlier click of the day. ``ok``:
    ``applicable_all``, if already at hand."""
    ok = applicable_all(data, catalogue) if ok is None else ok
    clicks, rows = data.clicks, data.clicks["row"].to_numpy()
    arm = data.rows["arm"].to_numpy()[rows]
    face = np.zeros(len(clicks))
    used = clicks["purchase"].to_numpy(bool) & (clicks["grant_id"].to_numpy() >= 0)
    before = pd.Series(used.astype(np.int64)).groupby(rows).cumsum().to_numpy() - used
    for j, tier in enumerate(catalogue.tiers):
        on = (arm == j) & ok[:, j] & (before == 0)
        face[on] = tier.face_value
    return face


def imputed_effects(
    model: ConversionModel, data: GrantData, catalogue: CouponCatalogue,
    ok: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(rows, K) incremental GMV and expected cost of each tier on each row's own clicks
    (``ok``: ``applicable_all``, if already at hand)."""
    ok = applicable_all(data, catalogue) if ok is None else ok
    rows = data.clicks["row"].to_numpy()
    x = data.row_x()[rows]
    price = data.clicks["price"].to_numpy(np.float64)
    r = expit(model.predict_logit(x, price, np.zeros(len(price))))
    n, k = len(data.rows), len(catalogue.tiers)
    gmv, cost = np.zeros((n, k)), np.zeros((n, k))
    for j, tier in enumerate(catalogue.tiers):
        on = ok[:, j]
        q = np.where(
            on, expit(model.predict_logit(x, price, np.full(len(price), tier.face_value))), 0.0
        )
        _, gmv[:, j], cost[:, j] = held_coupon_sums(q, r, on, price, rows, n, tier.face_value)
    return gmv, cost


def revisit_gaps(data: GrantData) -> np.ndarray:
    """Sorted seconds from each click without a purchase to the same viewer's next click on the
    same product that day (``inf``: none)."""
    c = data.clicks.sort_values(["row", "product_id", "ts"], kind="stable")
    same = (c["row"].to_numpy()[1:] == c["row"].to_numpy()[:-1]) & (
        c["product_id"].to_numpy()[1:] == c["product_id"].to_numpy()[:-1])  # fmt: skip
    ts = c["ts"].to_numpy(np.float64)
    gap = np.full(len(c), np.inf)
    gap[:-1][same] = ts[1:][same] - ts[:-1][same]
    return np.sort(gap[~c["purchase"].to_numpy(bool)])


def revisit_probability(gaps: np.ndarray, wait_s: float, validity_s: float) -> float:
    """P(the next click comes within ``validity_s`` after ``wait_s`` | none within ``wait_s``):
    the chance that a coupon granted at a hesitation meets another click on its product."""
    waited = len(gaps) - np.searchsorted(gaps, wait_s, side="right")
    if waited == 0:
        return 0.0
    within = np.searchsorted(gaps, wait_s + validity_s, side="right") - (len(gaps) - waited)
    return float(within / waited)


def card_value(model: ConversionModel, x: np.ndarray, price: float, face: float,
               revisit: float) -> tuple[float, float]:  # fmt: skip
    """(incremental GMV, expected cost) of a coupon of ``face`` on one product at ``price`` for
    a viewer with features ``x``, used at the next click with probability ``revisit``."""
    prices, faces = np.full(2, float(price)), np.array([0.0, float(face)])
    without, held = expit(model.predict_logit(np.vstack([x, x]), prices, faces))
    return revisit * (held - without) * price, revisit * held * face


@dataclass(frozen=True)
class ConversionFit:
    gmv: UpliftModel
    cost: UpliftModel
    conversion: ConversionModel
    penalty: float
    cv_log_loss: dict[float, float]  # each penalty of the grid: held-out log loss
    revisit_gaps: np.ndarray  # revisit_gaps of the training clicks


def fit_conversion_uplift(
    data: GrantData, catalogue: CouponCatalogue, *, alpha: float = 30.0,
    penalties: tuple[float, ...] = PENALTIES, seed: int = 0,
) -> ConversionFit:  # fmt: skip
    """The uplift models (incremental GMV, cost) of ``data``'s clicks, through a conversion
    model with its penalty chosen from ``penalties``; ``alpha``: the last stage's ridge."""
    if data.clicks is None or data.target is None:
        raise ValueError("conversion learner: the grant data carry no clicks / targets")
    rows, ok, x = data.clicks["row"].to_numpy(), applicable_all(data, catalogue), data.row_x()
    clicks = (x[rows], data.clicks["price"].to_numpy(np.float64),
              held_face(data, catalogue, ok), data.clicks["purchase"].to_numpy(bool))  # fmt: skip
    viewer = data.rows["user_id"].to_numpy()[rows]
    penalty, scores = select_penalty(*clicks, viewer, tuple(penalties), seed=seed)
    model = ConversionModel.fit(*clicks, penalty)
    gmv, cost = (fit_per_tier("cvr", x, y, data.offered, alpha)
                 for y in imputed_effects(model, data, catalogue, ok))  # fmt: skip
    return ConversionFit(gmv, cost, model, penalty, scores, revisit_gaps(data))
