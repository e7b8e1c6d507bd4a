"""The hesitation trigger judged against the planted truth, on logged days.

In this market a day's cards and clicks do not depend on the coupons held (``truth``), so a
coupon granted at a hesitation can be priced on a logged day as the day-start tiers are. A
viewer hesitates over a product when they click it and do not buy it within ``wait_s``
(``hesitations``: the first such click per viewer and product that day); the trigger decides at
that moment, and a limited-time coupon on the product granted then is used at the viewer's
later cards of the product within its validity. Its true incremental GMV and expected cost
follow from the planted response as in ``truth.true_effects``: each later card is bought with
``q = p_click * P(buy | coupon)`` instead of ``r = p_click * P(buy | no grant)`` while the coupon
is still held (``H = prod (1 - q)`` over the cards before it).

``judge_trigger`` runs ``HesitationTrigger.decide`` at every hesitation of the held-out
viewer-days without a day-start grant (where the truth is exact) and compares its grants with
granting every hesitation (what a random choice of the same share gets in expectation) and with
the trigger's own rule applied to the true effects (the oracle), in true incremental GMV per yuan
of true cost. It also checks the trigger's revisit probability (the chance that a later click
meets the coupon) against the true chance of a click on the product in the window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.coupons.metrics import correlations, ratio_interval, ratio_of_ratios
from recsys.coupons.trigger import HesitationTrigger, shelf_prices
from recsys.coupons.truth import applies, coupon_buy_probability, day_cards, held_coupon_sums
from recsys.market.coupons import CouponTier
from recsys.simulation.response import ResponseConfig, WorldTruth

HESITATION_COLUMNS = ("user_id", "product_id", "ts", "price")


def hesitations(cards: pd.DataFrame, wait_s: int) -> pd.DataFrame:
    """The first click per (viewer, product) of ``cards`` (``truth.day_cards`` with the logged
    ``click`` and ``purchase``) not followed by a purchase of the product within ``wait_s``."""
    cols = ["user_id", "product_id", "ts"]
    clicks = cards.loc[cards["click"].to_numpy(bool), [*cols, "price"]].reset_index(drop=True)
    clicks["click_row"] = np.arange(len(clicks))
    bought = cards.loc[cards["purchase"].to_numpy(bool), cols].rename(columns={"ts": "buy_ts"})
    pairs = clicks.merge(bought, on=["user_id", "product_id"])
    soon = (pairs["buy_ts"] >= pairs["ts"]) & (pairs["buy_ts"] <= pairs["ts"] + wait_s)
    clicks = clicks.loc[~clicks["click_row"].isin(pairs.loc[soon, "click_row"])]
    first = clicks.sort_values("ts", kind="stable").drop_duplicates(["user_id", "product_id"])
    return first[list(HESITATION_COLUMNS)].reset_index(drop=True)


def hesitation_effects(
    truth: WorldTruth,
    cards: pd.DataFrame,
    found: pd.DataFrame,
    tier: CouponTier,
    wait_s: int,
    response: ResponseConfig,
) -> pd.DataFrame:
    """Per row of ``found`` (``hesitations``): true incremental GMV and expected cost of a
    ``tier`` coupon on the product granted ``wait_s`` after the click, and the true chance of a
    click on the product while it is valid (``revisit``)."""
    if tier.scope != "product":
        raise ValueError(f"hesitation effects: tier {tier.name!r} is not a product coupon")
    h = found.assign(h=np.arange(len(found)), grant_ts=found["ts"] + wait_s)
    later = cards.merge(h[["user_id", "product_id", "h", "grant_ts"]],
                        on=["user_id", "product_id"])  # fmt: skip
    later = later.sort_values(["h", "ts", "position"], kind="stable", ignore_index=True)
    grant_ts = later["grant_ts"].to_numpy(np.int64)
    ok = applies(tier, later, later["product_id"].to_numpy(np.int64), grant_ts)
    window = (later["ts"].to_numpy(np.int64) >= grant_ts) & (
        later["ts"].to_numpy(np.int64) <= grant_ts + tier.validity_s
    )
    click = later["p_click"].to_numpy(np.float64)
    q = np.zeros(len(later))
    if ok.any():
        q[ok] = click[ok] * coupon_buy_probability(truth, later.loc[ok], tier.face_value, response)
    r = click * later["p_buy_no_grant"].to_numpy(np.float64)
    row, n = later["h"].to_numpy(np.int64), len(found)
    _, gmv, cost = held_coupon_sums(q, r, ok, later["price"].to_numpy(np.float64), row, n,
                                    tier.face_value)  # fmt: skip
    no_click = np.log1p(-np.minimum(np.where(window, click, 0.0), 1.0 - 1e-12))
    revisit = 1.0 - np.exp(np.bincount(row, no_click, minlength=n))
    return pd.DataFrame({"true_gmv": gmv, "true_cost": cost, "revisit": revisit})


def decide_all(trigger: HesitationTrigger, found: pd.DataFrame) -> pd.DataFrame:
    """The trigger's decision and predicted (GMV, cost) at each hesitation of ``found``, decided
    in time order; the trigger is fed each hesitation as the viewer's last click."""
    face = trigger.model.catalogue.tiers[trigger.column].face_value
    n = len(found)
    granted, eligible = np.zeros(n, bool), np.zeros(n, bool)
    gmv, cost = np.zeros(n), np.zeros(n)
    user, product = found["user_id"].to_numpy(np.int64), found["product_id"].to_numpy(np.int64)
    ts, price = found["ts"].to_numpy(np.int64), found["price"].to_numpy(np.float64)
    for i in np.argsort(ts, kind="stable"):
        u = int(user[i])
        trigger.observe(u, "click", int(ts[i]), int(product[i]))
        decision = trigger.decide(u, int(ts[i]) + trigger.wait_s)
        granted[i], eligible[i] = decision.grant, u in trigger.row and face < price[i]
        if decision.grant:
            gmv[i], cost[i] = decision.expected_gmv, decision.expected_cost
        elif eligible[i]:
            gmv[i], cost[i] = trigger.value(u, float(price[i]))
    return pd.DataFrame({"granted": granted, "eligible": eligible, "pred_gmv": gmv,
                         "pred_cost": cost})  # fmt: skip


def judge_trigger(judged: pd.DataFrame, lam: float, roi_floor: float, revisit: float | None,
                  seed: int = 0) -> dict:  # fmt: skip
    """Summary of ``judged`` (hesitations with ``decide_all`` and ``hesitation_effects``
    columns): the trigger's grants, every eligible hesitation, and the oracle, with intervals
    over viewers."""
    on = judged.loc[judged["eligible"].to_numpy(bool)].reset_index(drop=True)
    out = {"hesitations": int(len(judged)), "eligible": int(len(on)), "lam": lam}
    if on.empty:  # nothing to grant: no value to report
        return out
    gmv, cost = on["true_gmv"].to_numpy(), on["true_cost"].to_numpy()
    oracle = (gmv - lam * cost > 0) & (gmv >= roi_floor * cost) & (cost > 0)
    _, viewer = np.unique(on["user_id"].to_numpy(), return_inverse=True)
    picks = {"trigger": on["granted"].to_numpy(bool), "every": np.ones(len(on), bool),
             "oracle": oracle}  # fmt: skip
    per = {k: (np.bincount(viewer, gmv * m), np.bincount(viewer, cost * m))
           for k, m in picks.items()}  # fmt: skip
    for name, m in picks.items():
        out[name] = {"grants": int(m.sum()), "incremental_gmv": float((gmv * m).sum()),
                     "true_cost": float((cost * m).sum()),
                     "gmv_per_yuan": ratio_interval(*per[name], seed=seed)}  # fmt: skip
    if picks["trigger"].any():
        out["trigger_over_every"] = ratio_of_ratios(*per["trigger"], *per["every"], seed=seed)
    out["predicted_vs_true_gmv"] = correlations(on["pred_gmv"], gmv)
    out["revisit"] = {"predicted": revisit, "true_mean": float(on["revisit"].mean())}
    return out


def judge_on_days(market, model, rows: pd.DataFrame, tier: str, lam: float,
                  seed: int = 0) -> dict:  # fmt: skip
    """``judge_trigger`` over the logged days of ``rows`` (``GrantData.rows`` of held-out
    viewers): each day a fresh ``HesitationTrigger`` (the service's defaults, no budget limit)
    decides the hesitations of the viewers without a day-start grant."""
    f = market.frames
    price_of = shelf_prices(f["showcase"], f["live_sessions"], f["products"])
    parts = []
    for day in np.unique(rows["day"].to_numpy()):
        viewers = rows.loc[(rows["day"] == day) & (rows["arm"] < 0), "user_id"].to_numpy()
        logs = market.read_day(int(day))
        cards = day_cards(logs).merge(logs["impressions"][["request_id", "position", "click",
                                                           "purchase"]],
                                      on=["request_id", "position"])  # fmt: skip
        cards = cards.loc[cards["user_id"].isin(viewers)].reset_index(drop=True)
        trigger = HesitationTrigger(model, tier, lam, budget=float("inf"),
                                    price_of=price_of)  # fmt: skip
        found = hesitations(cards, trigger.wait_s)
        coupon = model.catalogue.tiers[trigger.column]
        effects = hesitation_effects(market.truth, cards, found, coupon, trigger.wait_s,
                                     market.config.response)  # fmt: skip
        parts.append(pd.concat([found, decide_all(trigger, found), effects], axis=1))
    judged = pd.concat(parts, ignore_index=True)
    return judge_trigger(judged, lam, trigger.roi_floor, trigger.revisit, seed) | {
        "tier": tier,
        "wait_s": trigger.wait_s,
        "days": int(len(parts)),
    }
