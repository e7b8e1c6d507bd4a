"""The hesitation trigger judged against the planted truth: hesitations found from the logged
cards, each triggered coupon's true effect equal to the day-start truth's for the same grant,
and the summary's sums."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.coupons import load_catalogue
from recsys.coupons.catalogue import Targets
from recsys.coupons.trigger_truth import hesitation_effects, hesitations, judge_trigger
from recsys.coupons.truth import day_cards, true_effects
from recsys.market import Market, MarketConfig, RandomPolicy

CATALOGUE = load_catalogue([
    {"name": "member_10", "face_value": 10.0},
    {"name": "flash_product_15", "face_value": 15.0, "scope": "product", "validity_s": 1800},
])  # fmt: skip
FLASH = CATALOGUE.tiers[1]


def _cards(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "product_id", "ts", "price", "click",
                                       "purchase"])  # fmt: skip


def test_a_hesitation_is_the_first_click_not_bought_within_the_wait():
    cards = _cards([
        (1, 7, 100, 50.0, True, False),   # bought at 200: not a hesitation
        (1, 7, 200, 50.0, True, True),
        (1, 7, 900, 50.0, True, False),   # the purchase at 200 came before it: hesitation
        (2, 7, 100, 50.0, True, False),   # bought only at 500, after the 300 s wait: hesitation
        (2, 7, 500, 50.0, True, True),
        (2, 8, 50, 80.0, False, False),   # not clicked
        (3, 9, 10, 20.0, True, False),    # hesitation, and its later click is not another one
        (3, 9, 20, 20.0, True, False),
    ])  # fmt: skip
    found = hesitations(cards, wait_s=300)
    assert found[["user_id", "product_id", "ts"]].values.tolist() == [
        [3, 9, 10], [2, 7, 100], [1, 7, 900]]  # fmt: skip


@pytest.fixture(scope="module")
def logged_day(tmp_path_factory):
    market = Market(MarketConfig(preset="tiny", open_rate=3.0, slate_size=10,
                                 catalogue=CATALOGUE),
                    tmp_path_factory.mktemp("trigger_truth"))  # fmt: skip
    market.run(RandomPolicy(seed=1), days=1)
    logs = market.read_day(0)
    cards = day_cards(logs).merge(logs["impressions"][["request_id", "position", "click",
                                                       "purchase"]],
                                  on=["request_id", "position"])  # fmt: skip
    return market, cards


def test_a_triggered_coupon_has_the_day_start_truth_of_the_same_grant(logged_day):
    market, cards = logged_day
    found = hesitations(cards, wait_s=300)
    effects = hesitation_effects(market.truth, cards, found, FLASH, 300, market.config.response)
    assert len(effects) == len(found) and (effects["true_cost"] >= 0).all()
    assert (effects["true_gmv"] > 0).sum() >= 3  # some viewers see the product again in time
    for i in np.flatnonzero(effects["true_gmv"].to_numpy() > 0)[:5]:
        user, product, ts = (int(found[c].iat[i]) for c in ("user_id", "product_id", "ts"))
        targets = Targets(
            np.array([user]),
            np.array([[-1, product]]),
            np.array([[False, True]]),
            np.array([["", ""]], dtype=object),
        )
        mine = cards.loc[(cards["user_id"] == user) & (cards["product_id"] == product)]
        day_start = true_effects(market.truth, mine, CATALOGUE, targets, ts + 300,
                                 market.config.response)  # fmt: skip
        assert effects["true_gmv"].iat[i] == pytest.approx(day_start.gmv[0, 1], rel=1e-9)
        assert effects["true_cost"].iat[i] == pytest.approx(day_start.cost[0, 1], rel=1e-9)
    assert ((effects["revisit"] > 0) >= (effects["true_gmv"] > 0)).all()
    with pytest.raises(ValueError, match="not a product coupon"):
        hesitation_effects(market.truth, cards, found, CATALOGUE.tiers[0], 300,
                           market.config.response)  # fmt: skip


def test_the_summary_adds_the_true_effects_of_each_choice_of_grants():
    judged = pd.DataFrame({
        "user_id": [1, 1, 2, 3], "eligible": [True, True, True, False],
        "granted": [True, False, True, False], "pred_gmv": [3.0, 1.0, 2.0, 0.0],
        "pred_cost": [1.0, 1.0, 1.0, 0.0], "true_gmv": [6.0, 0.0, 1.0, 9.0],
        "true_cost": [1.0, 0.5, 2.0, 1.0], "revisit": [0.5, 0.0, 0.2, 0.9],
    })  # fmt: skip
    out = judge_trigger(judged, lam=2.0, roi_floor=1.0, revisit=0.3)
    assert (out["hesitations"], out["eligible"]) == (4, 3)
    assert out["trigger"]["grants"] == 2 and out["trigger"]["incremental_gmv"] == 7.0
    assert out["trigger"]["gmv_per_yuan"]["value"] == pytest.approx(7.0 / 3.0)
    assert out["every"]["true_cost"] == 3.5
    assert out["oracle"]["grants"] == 1 and out["oracle"]["incremental_gmv"] == 6.0
    assert out["revisit"] == {"predicted": 0.3, "true_mean": pytest.approx(0.7 / 3)}


def test_a_day_without_eligible_hesitations_reports_counts_only():
    from recsys.coupons.report import trigger_lines

    judged = pd.DataFrame({"user_id": [1], "eligible": [False], "granted": [False],
                           "pred_gmv": [0.0], "pred_cost": [0.0], "true_gmv": [0.0],
                           "true_cost": [0.0], "revisit": [0.0]})  # fmt: skip
    out = judge_trigger(judged, lam=1.0, roi_floor=1.0, revisit=None)
    assert out == {"hesitations": 1, "eligible": 0, "lam": 1.0}
    text = "\n".join(trigger_lines(out | {"tier": "flash", "wait_s": 300, "days": 1}))
    assert "none judged" in text and "| trigger |" not in text
