"""recsys.reach: idempotent trigger evaluation, decisions that respect consent, quiet hours and
caps, copy that never leaves a field unfilled, and bad input counted rather than crashing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.market import Market, MarketConfig, Messages, PopularityPolicy
from recsys.reach.copy import CopyTemplates, CopyWriter
from recsys.reach.decide import Catalogue, DecisionConfig, decide
from recsys.reach.features import FEATURES, Clock, ReachHistory
from recsys.reach.ids import SeenIds
from recsys.reach.model import Logistic, ResponseModel
from recsys.reach.stream import EventBatch
from recsys.reach.triggers import TriggerConfig, TriggerEngine

DAY0 = 1_717_372_800  # a local midnight + 8h offset does not matter: only differences do
CLOCK = Clock()


def _events(rows: list[tuple]) -> pd.DataFrame:
    cols = ["event_id", "ts", "user_id", "event_type", "session_id", "streamer_id",
            "product_id", "coupon_value"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols).astype({"session_id": "Int64", "streamer_id": "Int64",
                                                    "product_id": "Int64"})  # fmt: skip


def _schedule():
    sessions = pd.DataFrame({"session_id": [0, 1], "streamer_id": [5, 6],
                             "start_ts": [DAY0 + 20 * 3600, DAY0 + 30 * 3600],
                             "end_ts": [DAY0 + 23 * 3600, DAY0 + 33 * 3600]})  # fmt: skip
    showcase = pd.DataFrame({"session_id": [0, 1], "product_id": [100, 100],
                             "start_ts": [DAY0 + 21 * 3600, DAY0 + 31 * 3600],
                             "end_ts": [DAY0 + 22 * 3600, DAY0 + 32 * 3600]})  # fmt: skip
    products = pd.DataFrame({"product_id": [100, 101], "category": ["beauty", "food"],
                             "brand": ["花西子", "三只松鼠"], "price": [99.0, 29.0]})  # fmt: skip
    return sessions, showcase, products


# -- idempotent ids -----------------------------------------------------------------------------


@given(st.lists(st.lists(st.integers(0, 60), max_size=30), max_size=12))
def test_seen_ids_apply_each_id_once_however_it_is_batched(batches):
    seen, reference = SeenIds(), set()
    for batch in batches:
        fresh = seen.first_time(np.array(batch, dtype=np.int64))
        expected = []
        for i in batch:
            expected.append(i not in reference)
            reference.add(i)
        assert fresh.tolist() == expected
    assert len(seen) == len(reference)


# -- the trigger engine -------------------------------------------------------------------------


def _engine(**kw) -> TriggerEngine:
    sessions, showcase, products = _schedule()
    return TriggerEngine(sessions, showcase, products, TriggerConfig(**kw))


def test_a_follow_and_a_cart_fire_their_triggers_once_under_redelivery():
    ev = _events([(1, DAY0 + 3600, 7, "follow", None, 5, None, 0.0),
                  (2, DAY0 + 3700, 7, "cart", None, None, 100, 0.0),
                  (3, DAY0 + 3800, 8, "cart", None, None, 100, 0.0),
                  (4, DAY0 + 3900, 8, "purchase", 0, 5, 100, 0.0)])  # fmt: skip
    once = _engine(announce_lead_s=86_399)
    out = [once.push(EventBatch.from_frame(ev)), once.advance(DAY0 + 7 * 3600)]
    twice = _engine(announce_lead_s=86_399)
    doubled = pd.concat([ev, ev.iloc[::-1]], ignore_index=True)  # every event delivered twice
    out2 = [twice.push(EventBatch.from_frame(doubled.iloc[:5])),
            twice.push(EventBatch.from_frame(doubled.iloc[5:])), twice.advance(DAY0 + 7 * 3600),
            twice.advance(DAY0 + 7 * 3600)]  # fmt: skip
    key = ["user_id", "kind", "session_id", "product_id", "start_ts"]
    a, b = pd.concat(out)[key], pd.concat(out2)[key]
    assert sorted(map(tuple, a.to_numpy().tolist())) == sorted(map(tuple, b.to_numpy().tolist()))
    assert twice.faults["duplicate event id"] == 4
    # user 7 follows streamer 5 (session 0) and carts product 100 (slots in sessions 0 and 1);
    # user 8 bought what they carted: no trigger
    assert set(a["user_id"]) == {7}
    assert sorted(a["kind"]) == ["carted_item_featured", "carted_item_featured",
                                 "followed_streamer_live"]  # fmt: skip


def test_a_cart_after_the_announcement_fires_at_once_and_a_follow_too():
    engine = _engine(announce_lead_s=86_399)
    assert engine.advance(DAY0 + 7 * 3600).empty  # both sessions announced; no fans, no carts
    late = _events([(1, DAY0 + 8 * 3600, 9, "cart", None, None, 100, 0.0),
                    (2, DAY0 + 8 * 3600, 9, "follow", None, 6, None, 0.0)])  # fmt: skip
    out = engine.push(EventBatch.from_frame(late))
    assert sorted(out["kind"]) == ["carted_item_featured", "carted_item_featured",
                                   "followed_streamer_live"]  # fmt: skip
    assert (out["event_ts"] == DAY0 + 8 * 3600).all()


def test_coupon_expiring_unless_used_and_lapsing_buyer_once_per_lapse():
    engine = _engine(coupon_ttl_s=86_400, coupon_warn_s=3 * 3600, lapse_days=2)
    ev = _events([(1, DAY0, 1, "coupon_claim", None, None, None, 10.0),
                  (2, DAY0, 2, "coupon_claim", None, None, None, 10.0),
                  (3, DAY0 + 100, 2, "purchase", 0, 5, 101, 10.0),
                  (4, DAY0 + 200, 3, "purchase", 0, 5, 101, 0.0)])  # fmt: skip
    engine.push(EventBatch.from_frame(ev))
    assert engine.advance(DAY0 + 20 * 3600).empty
    expiring = engine.advance(DAY0 + 21 * 3600)
    assert expiring[["user_id", "kind"]].values.tolist() == [[1, "coupon_expiring"]]
    lapsed = engine.advance(DAY0 + 2 * 86_400 + 300)
    assert set(lapsed["kind"]) == {"lapsing_buyer"} and set(lapsed["user_id"]) == {2, 3}
    assert engine.advance(DAY0 + 3 * 86_400).empty  # once per lapse
    back = _events([(5, DAY0 + 3 * 86_400, 3, "enter", 0, 5, None, 0.0)])
    engine.push(EventBatch.from_frame(back))
    assert engine.advance(DAY0 + 4 * 86_400).empty
    assert engine.advance(DAY0 + 5 * 86_400 + 1)["user_id"].tolist() == [3]  # lapsed again


def test_bad_events_are_counted_and_never_crash():
    engine = _engine(announce_lead_s=86_399)
    bad = pd.DataFrame({
        "event_id": [1, 2, 3, 4, 5, 6, 7],
        "ts": [DAY0 + 500, DAY0 + 100, DAY0 + 50, DAY0 + 600, DAY0 + 700, DAY0 + 800, DAY0 + 900],
        "user_id": [1, 1, 1, 1, 1, 1, 1],
        "event_type": ["follow", "cart", "teleport", "cart", "enter", "cart", "follow"],
        "session_id": [None, None, None, None, 0, None, None],
        "streamer_id": [999, None, None, None, 5, None, 5],
        "product_id": [None, 555, None, None, None, 100, None],
    })  # fmt: skip
    faults = engine.faults
    batch = EventBatch.from_frame(bad, faults)
    out = engine.push(batch)
    assert faults["unknown event type"] == 1 and faults["cart without product_id"] == 1
    assert faults["unknown streamer"] == 1 and faults["unknown product"] == 1
    assert faults["out of order"] == 1 and faults["late"] == 0  # 100 after 500: within 600 s
    assert engine.advance(DAY0 + 1000)["kind"].tolist().count("followed_streamer_live") == 1
    assert out.empty or set(out["user_id"]) == {1}


def test_the_engine_finds_the_markets_triggers_from_the_logged_events(tmp_path):
    class Recorder(PopularityPolicy):
        seen: list = []

        def notify(self, triggers, market):
            self.seen.append(triggers)
            return Messages.none()

    market = Market(MarketConfig(preset="tiny", seed=1), tmp_path)
    policy = Recorder()
    market.run(policy)
    f = market.frames
    engine = TriggerEngine(f["live_sessions"], f["showcase"], f["products"],
                           TriggerConfig(announce_lead_s=86_399))  # fmt: skip
    key = ["user_id", "kind", "session_id", "product_id", "start_ts"]
    for day in range(market.n_days):
        mine = engine.advance(market.world.config.chunk_window(day)[0])
        theirs = policy.seen[day]
        assert sorted(map(tuple, mine[key].to_numpy().tolist())) == sorted(
            map(tuple, theirs[key].to_numpy().tolist()))  # fmt: skip
        engine.push(EventBatch.from_frame(market.read_day(day)["events"]))
    assert sum(len(t) for t in policy.seen) > 100


# -- decisions ----------------------------------------------------------------------------------


def _model(push=0.5, sms=0.8, hour=0.5, fatigue=-0.3) -> ResponseModel:
    coef = np.zeros(len(FEATURES) + 1)
    coef[0] = -2.0
    for name, c in (("push", push), ("sms", sms), ("hour_share", hour), ("fatigue", fatigue)):
        coef[1 + FEATURES.index(name)] = c
    n = len(FEATURES)
    return ResponseModel(Logistic(coef, np.zeros(n), np.ones(n)), None, {}, 0)


def _history() -> ReachHistory:
    return ReachHistory(CLOCK, pd.Series({5: "beauty", 6: "food"}))


trigger_rows = st.lists(st.tuples(st.integers(1, 6), st.sampled_from([0, 1]),
                                  st.integers(0, 47 * 4)), min_size=1, max_size=25)  # fmt: skip
consents = st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=6,
                    max_size=6)  # fmt: skip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trigger_rows, consents, st.integers(0, 23), st.integers(0, 23), st.booleans())
def test_no_message_without_consent_or_in_quiet_hours_and_caps_hold(rows, agreed, qa, qb,
                                                                    at_trigger):  # fmt: skip
    sessions, _, products = _schedule()
    sessions = pd.DataFrame({"session_id": range(200), "streamer_id": [5, 6] * 100,
                             "start_ts": [DAY0 + 900 * q for q in range(200)],
                             "end_ts": [DAY0 + 900 * q + 7200 for q in range(200)]})  # fmt: skip
    t = pd.DataFrame({"trigger_id": range(len(rows)), "user_id": [r[0] for r in rows],
                      "kind": ["followed_streamer_live" if r[1] == 0 else
                               "carted_item_featured" for r in rows],
                      "session_id": [r[2] for r in rows],
                      "streamer_id": [5 if r[2] % 2 == 0 else 6 for r in rows],
                      "product_id": [-1 if r[1] == 0 else 100 for r in rows],
                      "start_ts": [DAY0 + 900 * r[2] for r in rows]})  # fmt: skip
    consent = pd.DataFrame(agreed, columns=["in_app", "push", "sms"]).assign(user_id=range(1, 7))
    config = DecisionConfig(quiet_start_hour=qa, quiet_end_hour=qb, min_value=-1.0,
                            send_time="trigger" if at_trigger else "chosen")  # fmt: skip
    out = decide(t, consent, _history(), _model(), Catalogue.of(sessions, products), config)
    assert len(out) == len(t) and out["reason_code"].notna().all()
    sent = out.loc[out["send"]]
    allowed = consent.set_index("user_id")
    for r in sent.itertuples():
        assert allowed.at[r.user_id, r.channel], "a message on a channel without consent"
    if qa != qb:
        assert not config.quiet(CLOCK.hour(sent["ts"].to_numpy())).any()
    assert (sent["ts"] <= sent["start_ts"]).all()
    assert (sent["ts"] >= CLOCK.day_start(sent["start_ts"].to_numpy())).all()
    per_day = sent.groupby(["user_id", CLOCK.day_start(sent["start_ts"].to_numpy())]).size()
    assert (per_day <= config.per_user_day).all()
    assert (sent.groupby(["user_id", "session_id"]).size() <= 1).all()  # merged


def test_unknown_references_are_skipped_with_their_reason():
    sessions, _, products = _schedule()
    t = pd.DataFrame({"trigger_id": [0, 1, 2], "user_id": [1, 1, 2],
                      "kind": ["followed_streamer_live", "carted_item_featured",
                               "followed_streamer_live"], "session_id": [0, 0, 77],
                      "streamer_id": [5, 5, 5], "product_id": [-1, 555, -1],
                      "start_ts": [DAY0 + 6 * 3600] * 3})  # 14:00 local  # fmt: skip
    consent = pd.DataFrame({"user_id": [1, 2], "in_app": True, "push": True, "sms": False})
    out = decide(t, consent, _history(), _model(), Catalogue.of(sessions, products),
                 DecisionConfig(min_value=-1.0))  # fmt: skip
    assert out["reason_code"].tolist() == ["sent", "unknown_reference", "unknown_reference"]


# -- copy ---------------------------------------------------------------------------------------

TEMPLATES = CopyTemplates(
    templates={"followed_streamer_live": ("你关注的@{streamer} {start_time} 开播，{interest}好物",
                                          "@{streamer} 开播啦")},
    fallback={"followed_streamer_live": "@{streamer} {start_time} 开播啦"},
)  # fmt: skip


def test_a_missing_field_falls_back_to_the_template_and_is_counted():
    writer = CopyWriter(TEMPLATES)
    text = writer.write("followed_streamer_live", 0, {"streamer": "主播5", "start_time": "20:00"})
    assert text == "@主播5 20:00 开播啦"
    assert writer.faults["template field missing: interest"] == 1
    assert writer.write("carted_item_featured", 0, {}) == "你加购的宝贝即将在直播间讲解，快来看看吧"
    assert writer.faults["no template for carted_item_featured"] == 1


def test_a_generator_is_used_when_its_text_is_good_and_refused_otherwise():
    answers = iter(["主播5 开播，你的最爱都在", None, "{oops}", "x" * 500])

    def generator(kind, variant, fields):
        value = next(answers)
        if value is None:
            raise RuntimeError("model offline")
        return value

    writer = CopyWriter(TEMPLATES, generator=generator)
    fields = {"streamer": "主播5", "start_time": "20:00", "interest": "美妆"}
    texts = [writer.write("followed_streamer_live", 1, fields) for _ in range(4)]
    assert texts == ["主播5 开播，你的最爱都在"] + ["@主播5 开播啦"] * 3
    assert writer.faults["generator error: RuntimeError"] == 1
    assert writer.faults["generator text refused (length or braces)"] == 2


def test_templates_naming_unknown_fields_are_refused_at_load():
    with pytest.raises(ValueError, match="unknown fields"):
        CopyTemplates(templates={"followed_streamer_live": ("{nickname} 来了",)}, fallback={})
    with pytest.raises(ValueError, match="may name only"):
        CopyTemplates(templates={}, fallback={"followed_streamer_live": "{interest}"})


def test_copy_variants_are_stable_per_viewer_and_cover_every_variant():
    writer = CopyWriter(TEMPLATES)
    users = np.arange(1000, dtype=np.int64)
    v = writer.variant(users, np.full(1000, "followed_streamer_live"))
    assert set(v) == {0, 1} and 400 < v.sum() < 600
    assert (writer.variant(users, np.full(1000, "followed_streamer_live")) == v).all()


def test_a_stream_deciding_many_times_a_day_keeps_the_days_caps():
    sessions = pd.DataFrame({"session_id": range(6), "streamer_id": [5, 6, 5, 6, 5, 6],
                             "start_ts": [DAY0 + 3600 * (4 + q) for q in range(6)],
                             "end_ts": [DAY0 + 3600 * (6 + q) for q in range(6)]})  # fmt: skip
    _, _, products = _schedule()
    consent = pd.DataFrame({"user_id": [1], "in_app": True, "push": True, "sms": True})
    config = DecisionConfig(min_value=-1.0, per_user_day=2, per_user_streamer_day=5)
    today = None
    for q in range(6):  # one trigger per call, as a stream would see them
        t = pd.DataFrame({"trigger_id": [q], "user_id": [1], "kind": ["followed_streamer_live"],
                          "session_id": [q], "streamer_id": [sessions["streamer_id"][q]],
                          "product_id": [-1], "start_ts": [sessions["start_ts"][q]]})  # fmt: skip
        out = decide(t, consent, _history(), _model(), Catalogue.of(sessions, products), config,
                     now=DAY0 + 3600 * 3, today=today)  # fmt: skip
        today = pd.concat([today, out.loc[out["send"]]], ignore_index=True)
    assert len(today) == 2 and (today["ts"] >= DAY0 + 3600 * 3).all()


def test_triggers_without_a_session_are_decided_within_their_window():
    sessions, _, products = _schedule()
    now = DAY0 + 2 * 3600  # 10:00 local
    t = pd.DataFrame({"trigger_id": [0, 1], "user_id": [1, 2],
                      "kind": ["coupon_expiring", "lapsing_buyer"], "session_id": [-1, -1],
                      "streamer_id": [-1, -1], "product_id": [-1, -1],
                      "start_ts": [now + 3 * 3600, now + 86_400]})  # fmt: skip
    consent = pd.DataFrame({"user_id": [1, 2], "in_app": True, "push": False, "sms": False})
    out = decide(t, consent, _history(), _model(), Catalogue.of(sessions, products),
                 DecisionConfig(min_value=-1.0), now=now)  # fmt: skip
    assert out["send"].all() and (out["channel"] == "in_app").all()
    assert ((out["ts"] >= now) & (out["ts"] <= out["start_ts"])).all()
