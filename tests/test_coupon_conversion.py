"""The conversion learner (recsys.coupons.conversion): which coupon a click held, the
coupon-aware P(buy | click), and uplift per viewer from it, against a planted click model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from recsys.coupons import load_catalogue
from recsys.coupons.conversion import (
    ConversionModel,
    card_value,
    fit_conversion_uplift,
    held_face,
    imputed_effects,
    revisit_gaps,
    revisit_probability,
)
from recsys.coupons.data import RULE_COLUMNS, Features
from recsys.coupons.evaluate import fit_models
from recsys.coupons.study import EXPOSURE, GrantData
from recsys.coupons.trigger import HesitationTrigger

CATALOGUE = load_catalogue([{"name": "member_5", "face_value": 5.0},
                            {"name": "member_20", "face_value": 20.0}])  # fmt: skip
DAY_START = 1_000_000


def _grant_data(rows: pd.DataFrame, clicks: pd.DataFrame, x: np.ndarray) -> GrantData:
    users = np.arange(len(x), dtype=np.int64)
    profile = pd.DataFrame(0.0, index=users, columns=list(RULE_COLUMNS))
    features = Features(users, x, tuple(f"f{i}" for i in range(x.shape[1])), profile)
    n, k = len(rows), len(CATALOGUE.tiers)
    return GrantData(features, rows, np.zeros((n, k)), np.zeros((n, k)), np.ones((n, k), bool),
                     np.zeros(n, np.int64), {0: DAY_START}, np.zeros((n, k), np.int64),
                     clicks)  # fmt: skip


def _rows(user: np.ndarray, arm: np.ndarray) -> pd.DataFrame:
    rows = pd.DataFrame({"user_id": user, "day": 0, "arm": arm, "propensity": 0.5,
                         "gmv": 0.0, "cost": 0.0, "orders": 0.0})  # fmt: skip
    for name in EXPOSURE:
        rows[name] = 0.0
    return rows


def test_a_click_holds_the_granted_coupon_until_it_is_redeemed():
    """Viewer 0 got member_20: it is usable at the first two clicks (the second buys with it),
    not at the third, nor at a click whose price is not above the face value; viewer 1 got
    none."""
    rows = _rows(np.array([0, 1]), np.array([1, -1]))
    clicks = pd.DataFrame({"row": [0, 0, 0, 0, 1], "ts": DAY_START + np.arange(5),
                           "streamer_id": 1, "product_id": 2,
                           "price": [50.0, 80.0, 15.0, 60.0, 90.0],
                           "purchase": [False, True, False, True, False],
                           "grant_id": [-1, 7, -1, -1, -1]})  # fmt: skip
    data = _grant_data(rows, clicks, np.zeros((2, 1)))
    assert held_face(data, CATALOGUE).tolist() == [20.0, 20.0, 0.0, 0.0, 0.0]


def test_an_imputed_effect_holds_the_coupon_once():
    """Two clicks: the coupon is still held at the second with probability 1 - q1."""
    rows = _rows(np.array([0]), np.array([-1]))
    clicks = pd.DataFrame({"row": [0, 0], "ts": DAY_START + np.arange(2), "streamer_id": 1,
                           "product_id": 2, "price": [40.0, 100.0], "purchase": [False, True],
                           "grant_id": -1})  # fmt: skip
    data = _grant_data(rows, clicks, np.zeros((1, 1)))
    model = ConversionModel(np.zeros(1), np.ones(1), np.log(60.0), 1.0,
                            np.array([-1.0, 0.0, -0.5, 0.0, 0.4, 0.0, 2.0, 0.0]))  # fmt: skip
    gmv, cost = imputed_effects(model, data, CATALOGUE)
    price = np.array([40.0, 100.0])
    lp = np.log(price) - np.log(60.0)
    for j, face in enumerate((5.0, 20.0)):
        r = expit(-1.0 - 0.5 * lp)
        q = expit(-1.0 - 0.5 * lp + 0.4 + 2.0 * face / price)
        held = np.array([1.0, 1.0 - q[0]])
        assert gmv[0, j] == pytest.approx(np.sum(held * (q - r) * price))
        assert cost[0, j] == pytest.approx(face * np.sum(held * q))


def _planted_market(n_viewers: int, days: int, seed: int):
    """Randomised grants over viewers whose coupon response grows with x1, clicks whose count
    and prices vary widely: the day's GMV is mostly noise around the coupon's effect."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_viewers, 3))
    user = np.repeat(np.arange(n_viewers), days)
    arm = rng.choice([-1, 0, 1], size=len(user), p=[0.5, 0.25, 0.25])
    n_clicks = rng.poisson(np.exp(1.0 + 0.4 * x[user, 0]))
    row = np.repeat(np.arange(len(user)), n_clicks)
    price = np.exp(rng.normal(4.0, 0.7, len(row)))
    base = -2.0 + 0.5 * x[user[row], 2] - 0.6 * (np.log(price) - 4.0)
    slope = np.clip(0.5 + 0.5 * x[user[row], 1], 0.0, None)  # the viewer's sensitivity
    face = np.array([t.face_value for t in CATALOGUE.tiers])
    u = rng.random(len(row))
    bought, grant = np.zeros(len(row), bool), np.full(len(row), -1)
    held = arm[row] >= 0
    for i in range(len(row)):  # in time order within each row
        if i == 0 or row[i] != row[i - 1]:
            holding = held[i]
        f = face[arm[row[i]]] if holding and price[i] > face[arm[row[i]]] else 0.0
        p = expit(base[i] + (f > 0) * slope[i] * (0.3 + 3.0 * f / price[i]))
        bought[i] = u[i] < p
        if bought[i] and f > 0:
            grant[i], holding = i, False
    within = np.arange(len(row)) - np.repeat(np.cumsum(n_clicks) - n_clicks, n_clicks)
    clicks = pd.DataFrame({"row": row, "ts": DAY_START + 400 * within, "streamer_id": 1,
                           "product_id": rng.integers(0, 3, len(row)), "price": price,
                           "purchase": bought, "grant_id": grant})  # fmt: skip
    rows = _rows(user, arm)
    rows["gmv"] = np.bincount(row, bought * price, minlength=len(user))
    rows["cost"] = np.bincount(row, (grant >= 0) * face[arm[row].clip(0)], minlength=len(user))
    true = np.column_stack([np.exp(1.0 + 0.4 * x[:, 0]) * np.clip(0.5 + 0.5 * x[:, 1], 0, None)
                            * f for f in face])  # fmt: skip
    return _grant_data(rows, clicks, x), true


def test_the_conversion_learner_finds_who_responds_where_the_day_outcome_hides_it():
    data, true = _planted_market(3000, 2, seed=0)
    fit = fit_conversion_uplift(data, CATALOGUE, alpha=1.0, penalties=(0.1, 10.0))
    assert set(fit.cv_log_loss) == {0.1, 10.0} and fit.penalty in fit.cv_log_loss
    x = data.features.x
    cvr = fit.gmv.predict(x)
    dr = fit_models(data, CATALOGUE, "dr", alpha=1.0, seed=0).gmv.predict(x)
    corr = np.array(
        [[np.corrcoef(p[:, j], true[:, j])[0, 1] for j in range(2)] for p in (cvr, dr)]
    )  # (learner, tier)
    assert (corr[0] > 0.8).all() and corr[0].mean() > corr[1].mean() + 0.15, corr


def test_the_conversion_learner_needs_clicks_and_both_outcomes():
    data, _ = _planted_market(50, 1, seed=1)
    bare = GrantData(data.features, data.rows, data.true_gmv, data.true_cost, data.offered,
                     data.first_ts, data.grant_ts)  # fmt: skip
    with pytest.raises(ValueError, match="carry no clicks"):
        fit_conversion_uplift(bare, CATALOGUE)
    never = data.clicks.assign(purchase=False)
    with pytest.raises(ValueError, match="needs clicks with and without a purchase"):
        ConversionModel.fit(np.zeros((len(never), 1)), never["price"].to_numpy(),
                            np.zeros(len(never)), never["purchase"].to_numpy())  # fmt: skip


def test_a_study_refuses_a_folder_that_already_holds_market_days(tmp_path):
    from recsys.coupons.study import WorldConfig, collect

    (tmp_path / "market" / "state").mkdir(parents=True)
    (tmp_path / "market" / "state" / "day-00000.pkl").write_bytes(b"")
    world = WorldConfig(preset="tiny", history_days=1, grant_days=2, n_days=3)
    with pytest.raises(ValueError, match="already holds logged days"):
        collect(world, CATALOGUE, {"none": 0.5, "member_5": 0.25, "member_20": 0.25}, tmp_path)


def test_a_revisit_is_the_next_click_on_the_same_product_the_same_day():
    rows = _rows(np.array([0, 0]), np.array([-1, -1]))
    clicks = pd.DataFrame({"row": [0, 0, 0, 0, 1], "ts": [0, 100, 500, 5000, 50],
                           "streamer_id": 1, "product_id": [7, 8, 7, 7, 7],
                           "price": 50.0, "purchase": [False, False, False, True, False],
                           "grant_id": -1})  # fmt: skip
    gaps = revisit_gaps(_grant_data(rows, clicks, np.zeros((1, 1))))
    assert gaps.tolist() == [500.0, 4500.0, np.inf, np.inf]  # no purchase: 3 of row 0, 1 of row 1
    # after 300 s without a click: 500 (within 300 + 1800) of the 4 gaps still open
    assert revisit_probability(gaps, 300, 1800) == pytest.approx(1 / 4)
    assert revisit_probability(gaps, 600, 1800) == pytest.approx(0.0)
    assert revisit_probability(np.array([10.0]), 300, 1800) == 0.0


def test_the_trigger_prices_the_coupon_at_the_card_with_the_conversion_model():
    data, _ = _planted_market(2000, 2, seed=2)
    catalogue = load_catalogue([{"name": "member_5", "face_value": 5.0},
                                {"name": "member_20", "face_value": 20.0},
                                {"name": "flash", "face_value": 15.0, "scope": "product",
                                 "validity_s": 1800}])  # fmt: skip
    data = GrantData(data.features, data.rows, *(np.hstack([a, np.zeros((len(a), 1))])
                                                for a in (data.true_gmv, data.true_cost)),
                     np.hstack([data.offered, np.ones((len(data.rows), 1), bool)]),
                     data.first_ts, data.grant_ts,
                     np.hstack([data.target, np.full((len(data.rows), 1), 2)]), data.clicks)
    model = fit_models(data, catalogue, "cvr", alpha=1.0, seed=0)
    trigger = HesitationTrigger(model, "flash", lam=0.5, budget=1e9, price_of=lambda p, t: 60.0)
    assert 0 < trigger.revisit < 1
    x = data.features.x
    v, c = trigger.value(3, 60.0)
    assert (v, c) == pytest.approx(card_value(model.conversion, x[3:4], 60.0, 15.0,
                                              trigger.revisit))  # fmt: skip
    for u in range(2000):
        trigger.observe(u, "click", 0, 2)
    granted = np.array([trigger.decide(u, 400).grant for u in range(2000)])
    sensitive = x[:, 1] > 0.5  # the planted response grows with x1
    assert granted[sensitive].mean() > 0.8 and granted[x[:, 1] < -1.0].mean() < 0.2
