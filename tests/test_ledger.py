"""The KPI ledger: hand-computed KPIs and intervals on a tiny hand-written log, not-estimable
ratios, refused inputs, LTV models against simulation, and exact totals on a market run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from recsys.ledger import Z95, BgNbd, GammaGamma, Ledger
from recsys.market import Market, MarketConfig, RandomPolicy, daily_kpis

DAY = 86_400
NAN = float("nan")


def _write(folder, table: str, day: int, rows: list[dict]) -> None:
    path = folder / table / f"part-{day:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)


def _card(req, user, pos, click, buy, amount, coupon, grant, p_click, p_buy, price):
    return ({"request_id": req, "user_id": user, "ts": 0, "position": pos, "click": click,
             "purchase": buy, "amount": amount, "coupon_value": coupon, "grant_id": grant},
            {"request_id": req, "position": pos, "p_click": p_click, "p_buy": p_buy,
             "price": price})  # fmt: skip


def _event(ts, user, kind, amount, coupon=NAN):
    return {"ts": ts, "user_id": user, "event_type": kind, "amount": amount, "coupon_value": coupon}


@pytest.fixture
def logs(tmp_path):
    """Two days. Day 0: viewers 1, 2, 3; user 1 buys a card with granted coupon 5 (10 off),
    user 2 a card with the room's own drop (5 off, no platform cost); user 5 (no request)
    buys 50 in a room. Day 1: viewers 1 and 4 click nothing; user 1 buys 40 in a room; user
    5 is refunded 50."""
    day0 = [
        _card(0, 1, 0, True, True, 90.0, 10.0, 5, 0.5, 0.2, 100.0),
        _card(0, 1, 1, False, False, 0.0, 0.0, -1, 0.1, 0.5, 20.0),
        _card(1, 2, 0, True, False, 0.0, 0.0, -1, 0.5, 0.1, 40.0),
        _card(1, 2, 1, True, True, 35.0, 5.0, -1, 0.0, 0.5, 10.0),
        _card(2, 3, 0, False, False, 0.0, 0.0, -1, 0.2, 0.5, 10.0),
    ]
    day1 = [
        _card(3, 1, 0, False, False, 0.0, 0.0, -1, 0.1, 0.1, 50.0),
        _card(4, 4, 0, False, False, 0.0, 0.0, -1, 0.2, 0.1, 100.0),
        _card(4, 4, 1, False, False, 0.0, 0.0, -1, 0.0, 0.1, 100.0),
    ]
    for day, cards in ((0, day0), (1, day1)):
        _write(tmp_path, "impressions", day, [c for c, _ in cards])
        _write(tmp_path, "truth/impressions", day, [t for _, t in cards])
    _write(tmp_path, "requests", 0, [{"request_id": i, "ts": 0, "user_id": u}
                                     for i, u in enumerate((1, 2, 3))])  # fmt: skip
    _write(tmp_path, "requests", 1, [{"request_id": 3, "ts": DAY, "user_id": 1},
                                     {"request_id": 4, "ts": DAY, "user_id": 4}])  # fmt: skip
    _write(
        tmp_path,
        "events",
        0,
        [
            _event(10, 1, "purchase", 90.0, 10.0),
            _event(20, 2, "purchase", 35.0, 5.0),
            _event(30, 5, "purchase", 50.0),
            _event(40, 3, "like", NAN),
        ],
    )
    _write(tmp_path, "events", 1, [_event(DAY + 10, 1, "purchase", 40.0),
                                   _event(DAY + 20, 5, "refund", 50.0)])  # fmt: skip
    users = {"user_id": [1, 2, 3, 4], "age_band": ["18-24", "25-34", "18-24", "25-34"]}
    pd.DataFrame(users).to_parquet(tmp_path / "users.parquet", index=False)
    return tmp_path


def _half_ratio(y: list[float], x: list[float]) -> float:
    """Delta-method half-width of sum(y) / sum(x) over units, written out."""
    y_, x_ = np.array(y), np.array(x)
    resid = y_ - y_.sum() / x_.sum() * x_
    return Z95 * resid.std(ddof=1) * math.sqrt(len(x_)) / x_.sum()


def test_daily_kpis_match_hand_computation(logs):
    with Ledger(logs) as ledger:
        d = ledger.daily().set_index("day")
    assert d.loc[0, ["viewers", "requests", "impressions", "clicks", "slate_orders", "orders",
                     "new_buyers"]].tolist() == [3, 3, 5, 3, 2, 3, 3]  # fmt: skip
    assert d.loc[0, ["gmv", "paid", "refunds", "slate_gmv", "coupon_cost", "message_cost"]
                 ].tolist() == pytest.approx([190.0, 175.0, 0.0, 140.0, 10.0, 0.0])  # fmt: skip
    expect = {
        "ctr": (0.6, Z95 * math.sqrt(0.52) * math.sqrt(3) / 5),
        "cvr": (2 / 3, Z95 * math.sqrt(3) / 9),
        "aov": (190 / 3, _half_ratio([100, 40, 0, 50], [1, 1, 0, 1])),
        "refund_rate": (0.0, 0.0),
        "roi": ((190 - 10) / 10, Z95 * math.sqrt(12_200 / 3) * 2 / 10),
        "cac": (10 / 3, Z95 * math.sqrt(600 / 27) * 2 / 3),
        "slate_gmv_per_viewer": (140 / 3, Z95 * np.std([100, 40, 0], ddof=1) / math.sqrt(3)),
        "true_gmv_per_viewer": (14 / 3, Z95 * np.std([11, 2, 1], ddof=1) / math.sqrt(3)),
    }
    for kpi, (value, half) in expect.items():
        row = d.loc[0]
        assert row[f"{kpi}_estimable"], kpi
        got = [row[kpi], row[f"{kpi}_lo"], row[f"{kpi}_hi"]]
        assert got == pytest.approx([value, value - half, value + half]), kpi
    assert d.loc[1, ["orders", "gmv", "paid", "refunds", "aov"]].tolist() == [1, 40, 40, 50, 40]
    assert d.loc[1, "refund_rate"] == pytest.approx(1.25)
    assert d.loc[1, "refund_rate_hi"] - 1.25 == pytest.approx(_half_ratio([0, 0, 50], [40, 0, 0]))


def test_zero_denominators_are_not_estimable_never_zero(logs):
    """Day 1: no clicks (CVR), no marketing cost (ROI), no new buyer (CAC)."""
    with Ledger(logs) as ledger:
        day1 = ledger.daily().set_index("day").loc[1]
    assert day1["ctr"] == 0.0 and day1["ctr_estimable"]  # 0 clicks of 3 cards: a real 0
    for kpi in ("cvr", "roi", "cac"):
        assert not day1[f"{kpi}_estimable"], kpi
        assert np.isnan([day1[kpi], day1[f"{kpi}_lo"], day1[f"{kpi}_hi"]]).all(), kpi


def test_kpis_by_arm_and_segment(logs, tmp_path_factory):
    arms = pd.DataFrame({"user_id": [1, 2, 3, 4], "arm": ["A", "A", "B", "B"]})
    path = tmp_path_factory.mktemp("arms") / "arms.parquet"
    arms.to_parquet(path, index=False)
    with Ledger(logs) as ledger:
        by_frame, by_file = ledger.daily(arms=arms), ledger.daily(arms=path)
        by_both = ledger.daily(arms=arms, segment="age_band")
    pd.testing.assert_frame_equal(by_frame, by_file)
    day0 = by_frame.loc[by_frame["day"] == 0].fillna({"arm": "none"}).set_index("arm")
    assert day0.loc["A", ["viewers", "clicks", "gmv", "coupon_cost", "ctr"]].tolist() == [
        2, 3, 140.0, 10.0, 0.75]  # fmt: skip
    assert day0.loc["B", "ctr"] == 0.0 and not day0.loc["B", "cvr_estimable"]
    unassigned = day0.loc["none"]  # user 5: bought, had no request and no arm
    assert unassigned["viewers"] == 0 and unassigned["gmv"] == 50.0
    assert not unassigned["true_gmv_per_viewer_estimable"]
    cells = by_both.loc[(by_both["day"] == 0) & (by_both["arm"] == "A")]
    assert cells.set_index("age_band")["gmv"].to_dict() == {"18-24": 100.0, "25-34": 40.0}
    assert by_both.groupby("day")["gmv"].sum().tolist() == pytest.approx([190.0, 40.0])


def test_bad_inputs_are_refused_by_name(logs, tmp_path):
    arms = pd.DataFrame({"user_id": [1, 1], "arm": ["A", "B"]})
    with Ledger(logs) as ledger:
        with pytest.raises(ValueError, match=r"users\.parquet: missing field\(s\) \['gender'\]"):
            ledger.daily(segment="gender")
        with pytest.raises(ValueError, match=r"arms frame: user_id\(s\) named twice: \[1\]"):
            ledger.daily(arms=arms)
        with pytest.raises(ValueError, match=r"arms frame: missing field\(s\) \['arm'\]"):
            ledger.daily(arms=arms[["user_id"]])
    bad = logs / "events" / "part-00002.parquet"
    pd.DataFrame({"ts": [1], "user_id": [1], "event_type": ["purchase"]}).to_parquet(bad)
    missing = r"'events': .*part-00002\.parquet: missing field\(s\) \['amount', 'coupon_value'\]"
    with pytest.raises(ValueError, match=missing):
        Ledger(logs)
    bad.unlink()
    for part in (logs / "truth" / "impressions").iterdir():
        part.unlink()
    with pytest.raises(FileNotFoundError, match=r"table 'truth/impressions': no part-\*"):
        Ledger(logs)


def test_units_are_built_day_by_day_and_every_card_needs_its_truth(logs):
    """A day some tables did not log still counts (day 1 without slates: only its room
    purchase and refund); a card without its truth row is refused naming its day's part."""
    for table in ("requests", "impressions", "truth/impressions"):
        (logs / table / "part-00001.parquet").unlink()
    with Ledger(logs) as ledger:
        d = ledger.daily().set_index("day")
    assert d.loc[1, ["viewers", "impressions", "orders", "gmv", "refunds"]].tolist() == [
        0, 0, 1, 40.0, 50.0]  # fmt: skip
    assert d.loc[0, ["impressions", "new_buyers"]].tolist() == [5, 3]
    truth = logs / "truth" / "impressions" / "part-00000.parquet"
    pd.read_parquet(truth).iloc[1:].to_parquet(truth, index=False)
    with Ledger(logs) as ledger:
        with pytest.raises(ValueError, match=r"part-00000\.parquet: no row for 1 impression"):
            ledger.daily()
    (logs / "events" / "part-x.parquet").write_bytes(truth.read_bytes())
    with pytest.raises(ValueError, match=r"part-x\.parquet: not named part-<day>\.parquet"):
        Ledger(logs)


def test_ltv_summary_by_hand(logs):
    """Hourly periods: user 1 buys in hours 0 and 24 (one repeat, 40 paid), user 2 and 5 once
    in hour 0; the log ends in hour 24."""
    with Ledger(logs) as ledger:
        ltv = ledger.ltv(horizon=24, period_s=3600)
    got = ltv.users.set_index("user_id")[["frequency", "recency", "T", "monetary"]]
    assert got.to_dict("index") == {
        1: {"frequency": 1, "recency": 24, "T": 24, "monetary": 40.0},
        2: {"frequency": 0, "recency": 0, "T": 24, "monetary": 0.0},
        5: {"frequency": 0, "recency": 0, "T": 24, "monetary": 0.0},
    }
    assert ltv.gamma_gamma is None and ltv.users["ltv"].isna().all()  # one repeat buyer
    assert (ltv.users["expected_purchases"] > 0).all()


def _simulate_bgnbd(rng, n, r, alpha, a, b, T, horizon):
    """Repeat purchases (x, t_x) in (0, T] and in (T, T + horizon] of BG/NBD buyers."""
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    t, x, t_x, later = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():
        t = t + rng.exponential(1 / lam)
        x, later = x + (alive & (t <= T)), later + (alive & (t > T) & (t <= T + horizon))
        t_x = np.where(alive & (t <= T), t, t_x)
        alive &= (t <= T + horizon) & (rng.random(n) >= p)  # drop out after a repeat
    return x, t_x, later


def test_bgnbd_expectation_and_holdout():
    """The closed form (hypergeometric) for a new buyer equals the integral over the mixing
    distributions; a fit on simulated buyers predicts their next purchases."""
    model = BgNbd(r=0.8, alpha=5.0, a=0.8, b=2.5)
    t = 20.0

    def given_p(p: float) -> float:  # E[X(t) | p], lambda integrated out
        return (1 - (model.alpha / (model.alpha + p * t)) ** model.r) / p

    beta = stats.beta(model.a, model.b)
    exact = integrate.quad(lambda p: given_p(p) * beta.pdf(p), 0, 1, limit=200)[0]
    zero = np.zeros(1)
    assert model.expected_purchases(t, zero, zero, zero)[0] == pytest.approx(exact, rel=1e-6)
    rng = np.random.default_rng(1)
    T = rng.uniform(10, 40, 4000)
    x, t_x, later = _simulate_bgnbd(rng, 4000, 0.8, 5.0, 0.8, 2.5, T, t)
    fit = BgNbd.fit(x, t_x, T)
    assert fit.converged
    predicted = fit.expected_purchases(t, x, t_x, T)
    assert predicted.mean() == pytest.approx(later.mean(), rel=0.05)
    for lo, hi in ((0, 0), (1, 3), (4, 100)):
        k = (x >= lo) & (x <= hi)
        assert predicted[k].mean() == pytest.approx(later[k].mean(), rel=0.15), (lo, hi)


def test_gamma_gamma_recovers_mean_spend_and_shrinks():
    rng = np.random.default_rng(2)
    p, q, gamma, n = 6.0, 4.0, 15.0, 3000
    nu, x = rng.gamma(q, 1 / gamma, n), rng.integers(1, 8, n).astype(float)
    m = np.array([rng.gamma(p, 1 / nu[i], int(x[i])).mean() for i in range(n)])
    fit = GammaGamma.fit(x, m)
    population = fit.p * fit.gamma / (fit.q - 1)
    assert population == pytest.approx(p * gamma / (q - 1), rel=0.05)
    spend = fit.expected_spend(x, m)
    assert np.all((spend - m) * (population - m) >= 0)  # between the buyer's and everyone's


@pytest.fixture(scope="module")
def market_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("market")
    Market(MarketConfig(preset="tiny", seed=0), folder).run(RandomPolicy(seed=0))
    return folder


def _logged(folder, table: str) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((folder / table).glob("part-*"))])


def test_ledger_totals_equal_the_logs_and_agree_with_daily_kpis(market_run):
    with Ledger(market_run, memory_limit="256MB", threads=1) as ledger:
        d, ltv = ledger.daily(), ledger.ltv(horizon=24, period_s=3600)
    ev, imp = _logged(market_run, "events"), _logged(market_run, "impressions")
    bought = ev.loc[ev["event_type"] == "purchase"]
    assert d["orders"].sum() == len(bought) > 0
    assert d["slate_orders"].sum() == imp["purchase"].sum() > 0
    assert d["gmv"].sum() == pytest.approx((bought["amount"] + bought["coupon_value"].fillna(0)
                                            ).sum(), rel=1e-12)  # fmt: skip
    assert d["paid"].sum() == pytest.approx(bought["amount"].sum(), rel=1e-12)
    refunded = ev.loc[ev["event_type"] == "refund", "amount"].sum()
    assert d["refunds"].sum() == pytest.approx(refunded, rel=1e-12)
    assert d["new_buyers"].sum() == bought["user_id"].nunique() == len(ltv.users)
    kp = daily_kpis(market_run)
    same = {"viewers": "viewers", "requests": "requests", "impressions": "impressions",
            "slate_orders": "orders", "slate_gmv": "gmv", "gmv": "all_gmv",
            "coupon_cost": "coupon_cost"}  # fmt: skip
    for ours, theirs in same.items():
        assert d[ours].to_numpy(float) == pytest.approx(kp[theirs].to_numpy(float)), ours
    pairs = {"ctr": "ctr", "cvr": "cvr", "slate_gmv_per_viewer": "gmv_per_viewer",
             "true_gmv_per_viewer": "true_gmv_per_viewer"}  # fmt: skip
    for ours, theirs in pairs.items():
        for end in ("", "_lo", "_hi"):
            got, want = d[ours + end].to_numpy(float), kp[theirs + end].to_numpy(float)
            assert got == pytest.approx(want, rel=1e-9), ours + end
    assert not d["roi_estimable"].any()  # random slates grant no coupons: no cost
    assert np.isfinite(ltv.users[["p_alive", "expected_purchases", "ltv"]].to_numpy()).all()


def test_coupon_cost_is_the_face_value_of_the_redeemed_grants(tmp_path):
    from tests.test_market import UPLIFT_TIERS, _RandomisedGrants

    config = MarketConfig(preset="tiny", seed=0, open_rate=2.0, catalogue=UPLIFT_TIERS)
    market = Market(config, tmp_path)
    market.run(_RandomisedGrants(seed=1), days=2)
    grants = pd.concat([market.read_day(d)["coupon_grants"] for d in range(2)])
    redeemed = pd.concat([market.read_day(d)["coupon_redemptions"] for d in range(2)])
    assert len(redeemed) > 0 and redeemed["grant_id"].is_unique
    face = grants.set_index("grant_id").loc[redeemed["grant_id"], "face_value"]
    assert np.allclose(face.to_numpy(), redeemed["face_value"].to_numpy())
    with Ledger(tmp_path) as ledger:
        daily = ledger.daily()
    assert math.isclose(daily["coupon_cost"].sum(), redeemed["face_value"].sum(), rel_tol=1e-12)
    assert daily["roi_estimable"].all()
