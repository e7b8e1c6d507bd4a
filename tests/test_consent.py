"""Consent per purpose (recsys.privacy.consent), honoured by the service, profiling, coupons
and the market: opted-out viewers get no personalised recommendation, no profile rows and no
messages or coupons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recsys.market import Market, MarketConfig, PopularityPolicy
from recsys.market.checks import check_grants
from recsys.market.policy import CouponGrants, DecisionError
from recsys.privacy.consent import CHANNELS, ConsentBook, Decision, plant_opt_outs
from recsys.serving import FixedClock, PopularityLiveService, create_app
from recsys.serving.consent import ANONYMOUS_USER, NO_CONSENT, attach_consent


def test_latest_decision_holds_per_purpose_and_channel(tmp_path):
    book = ConsentBook([Decision(1, "marketing", False, ts=10),
                        Decision(1, "marketing", True, ts=20, channel="push"),
                        Decision(2, "personalisation", False, ts=5),
                        Decision(2, "personalisation", True, ts=3)])  # fmt: skip
    assert book.allowed([1, 1, 1], "marketing", "push").tolist() == [True] * 3
    assert not book.allows(1, "marketing", "sms")  # the all-channel withdrawal
    assert not book.allows(2, "personalisation")  # ts 5 is later than ts 3
    assert book.allows(3, "coupons") and not ConsentBook(default=False).allows(3, "coupons")
    assert book.withheld("personalisation").tolist() == [2]
    book.write(tmp_path)
    back = ConsentBook.read(tmp_path)
    pd.testing.assert_frame_equal(back.table(), book.table().sort_values("ts", kind="stable")
                                  .reset_index(drop=True))  # fmt: skip
    assert back.allowed([1, 2], "marketing", "sms").tolist() == [False, True]
    assert book.forget([1]) == 2 and book.allows(1, "marketing", "sms")


def test_bad_rows_are_named():
    with pytest.raises(ValueError, match="purpose 'ads'"):
        Decision(1, "ads", True, ts=0)
    with pytest.raises(ValueError, match="channel 'push' is not valid for purpose 'coupons'"):
        Decision(1, "coupons", True, ts=0, channel="push")
    frame = pd.DataFrame({"user_id": [1, 2], "purpose": ["coupons", "nope"],
                          "channel": ["", ""], "granted": [True, False], "ts": [0, 1]})  # fmt: skip
    with pytest.raises(ValueError, match="my.parquet, row 1: .*'nope'"):
        ConsentBook.from_table(frame, source="my.parquet")


def test_planted_opt_outs_withhold_everything():
    users = np.arange(10_000, dtype=np.int64)
    book = plant_opt_outs(users, share=0.1, seed=3)
    out = book.withheld("personalisation")
    assert 800 < len(out) < 1200
    for channel in CHANNELS:
        assert np.array_equal(book.withheld("marketing", channel), out)
    assert np.array_equal(book.withheld("coupons"), out)
    events = pd.DataFrame({"user_id": users, "x": 1})
    assert set(book.keep_events(events)["user_id"]).isdisjoint(out.tolist())


# -- the service ----------------------------------------------------------------------------


@pytest.fixture()
def service_now(tiny_world):
    s = tiny_world.live_sessions
    return int(s["start_ts"].iloc[len(s) // 2]) + 600


def _client(tiny_world, now, book):
    service = PopularityLiveService.from_tables(tiny_world, until=now)
    return TestClient(attach_consent(create_app(service, clock=FixedClock(now)), book))


def _session_events(tables, now: int, user: int) -> list[dict]:
    """A few room entries and clicks of ``user`` in the rooms live at ``now``."""
    s = tables.live_sessions
    live = s.loc[(s["start_ts"] <= now) & (now <= s["end_ts"])].head(2)
    shelf = tables.showcase.loc[tables.showcase["session_id"].isin(live["session_id"])]
    out = []
    for row in live.itertuples():
        out.append(
            {
                "ts": now - 60,
                "user_id": user,
                "event_type": "enter",
                "session_id": int(row.session_id),
                "streamer_id": int(row.streamer_id),
            }
        )
        for p in shelf.loc[shelf["session_id"] == row.session_id, "product_id"].head(3):
            out.append({"ts": now - 30, "user_id": user, "event_type": "click",
                        "session_id": int(row.session_id), "streamer_id": int(row.streamer_id),
                        "product_id": int(p)})  # fmt: skip
    return out


def test_the_service_serves_an_opted_out_viewer_the_anonymous_ranking(tiny_world, service_now):
    user = int(tiny_world.users["user_id"].iloc[0])
    book = ConsentBook()
    client = _client(tiny_world, service_now, book)
    assert client.post("/events", json={"events": _session_events(tiny_world, service_now, user)}
                       ).status_code == 200  # fmt: skip
    anonymous = client.get("/recommend", params={"user": ANONYMOUS_USER, "k": 10}).json()
    personal = client.get("/recommend", params={"user": user, "k": 10}).json()
    assert personal["personalised_reason"] is None and personal["items"] != anonymous["items"]
    # Withdrawn: the very next request is the anonymous ranking, with the reason.
    r = client.post("/consent", json={"user_id": user, "purpose": "personalisation",
                                      "granted": False})  # fmt: skip
    assert r.status_code == 200 and r.json()["allowed"] is False
    out = client.get("/recommend", params={"user": user, "k": 10}).json()
    assert out["cold_start"] and out["personalised_reason"] == NO_CONSENT
    assert out["items"] == anonymous["items"] and out["user"] == user
    # Their new events are kept out of per-viewer state, and counted.
    client.post("/events", json={"events": _session_events(tiny_world, service_now, user)})
    assert client.get("/healthz").json()["events_without_consent"] > 0
    client.post("/consent", json={"user_id": user, "purpose": "personalisation", "granted": True})
    assert client.get("/recommend", params={"user": user, "k": 10}).json()["items"] == \
        personal["items"]  # fmt: skip


def test_the_consent_endpoint_refuses_a_bad_decision(tiny_world, service_now):
    client = _client(tiny_world, service_now, ConsentBook())
    bad = client.post("/consent", json={"user_id": 1, "purpose": "coupons", "granted": False,
                                        "channel": "sms"})  # fmt: skip
    assert bad.status_code == 422 and "not valid for purpose 'coupons'" in bad.text
    assert client.post("/consent", json={"user_id": 1, "purpose": "ads",
                                         "granted": False}).status_code == 422  # fmt: skip


# -- profiling ------------------------------------------------------------------------------


def test_opted_out_viewers_get_no_profile_or_tag_rows(tiny_world):
    from recsys.profiling import Profiler

    events = tiny_world.events
    book = plant_opt_outs(events["user_id"].unique(), share=0.2, seed=1)
    out = set(book.withheld("personalisation").tolist())
    half = events["ts"].median()
    early, late = events[events["ts"] <= half], events[events["ts"] > half]
    plain = Profiler.for_tables(tiny_world)
    before = plain.build(early)  # profiled before they withdrew
    withdrawn = Profiler(catalog=plain.catalog, consent=book)
    fresh = withdrawn.build(events)
    assert out and out.isdisjoint(fresh.profiles.users["user_id"].tolist())
    assert out.isdisjoint(fresh.tags["user_id"].tolist())
    updated = withdrawn.update(before.stats, late)
    assert out.isdisjoint(updated.profiles.users["user_id"].tolist())
    assert out.isdisjoint(updated.tags["user_id"].tolist())
    # Their statistics only moved in time (rebased), never by a new event: 0 rows updated.
    kept = before.stats.rebased(updated.stats.ref_ts).users
    rows = sorted(out & set(kept.index.tolist()))
    assert rows
    pd.testing.assert_frame_equal(updated.stats.users.loc[rows], kept.loc[rows])


# -- the market -----------------------------------------------------------------------------


class _GrantEveryone(PopularityPolicy):
    """Popularity slates, a member coupon for every viewer the market offers."""

    def grant_coupons(self, viewers, day, market):
        n = len(viewers)
        return CouponGrants(viewers, np.full(n, "member_10", dtype=object), np.full(n, -1))


def test_the_market_sends_opted_out_viewers_no_message_and_no_coupon(tmp_path):
    from recsys.reach.policy import BlastPolicy

    config = MarketConfig(preset="tiny", seed=0, opt_out_share=0.2)
    market = Market(config, tmp_path)
    out = market.opt_outs.withheld("personalisation")
    assert len(out) > 50
    market.run(BlastPolicy(_GrantEveryone()), days=2)
    messages = pd.concat([pd.read_parquet(p) for p in (tmp_path / "messages").glob("*.parquet")])
    grants = pd.concat([pd.read_parquet(p) for p in (tmp_path / "coupon_grants").glob("*")])
    assert len(messages) > 0 and len(grants) > 0
    assert not messages["user_id"].isin(out).any() and not grants["user_id"].isin(out).any()
    assert ConsentBook.read(tmp_path).withheld("coupons").tolist() == out.tolist()
    with pytest.raises(DecisionError, match="not consented to personalised coupons"):
        check_grants("p", CouponGrants(out[:1], np.array(["member_10"], dtype=object),
                                       np.array([-1])), market.view, 0, 0)  # fmt: skip


def test_the_pipeline_policy_answers_opted_out_viewers_as_anyone(trained_two_tower, tmp_path):
    from recsys.cli.index import build_indexes
    from recsys.market.arrivals import arrivals
    from recsys.market.pipeline import PipelinePolicy
    from recsys.market.policy import Requests
    from tests.conftest import compose_config

    ckpt, cache = trained_two_tower
    build_indexes(compose_config("index", [f"checkpoint={ckpt}", f"cache_dir={cache}"]))
    market = Market(MarketConfig(preset="tiny", seed=0, opt_out_share=0.3), tmp_path)
    start = market.world.config.chunk_window(1)[0]
    policy = PipelinePolicy.load(ckpt, start_ts=start, cache_dir=str(cache))
    user, ts = arrivals(market.world, market.schedule, 1, 1.0, np.random.default_rng(3))
    users = market.world.users.pseudonym[user][:120]
    slates = policy.recommend(Requests(np.arange(len(users)), users, ts[:120], 10), market.view)
    out = np.isin(users, market.opt_outs.withheld("personalisation"))
    assert out.sum() > 10 and (~out).sum() > 10
    personalised = 0
    for i in range(len(users)):
        anyone = policy.service.recommend(ANONYMOUS_USER, int(ts[i]), 10, ("product",)).items
        same = [it.id for it in anyone] == slates.product_id[i, : len(anyone)].tolist()
        personalised += int(out[i] and not same)
    assert personalised == 0
    # The day's events fold in only for viewers who allow personalisation.
    who = [int(users[out][0]), int(users[~out][0])]
    day = pd.DataFrame({"event_id": [0, 1], "ts": [int(ts[0])] * 2, "user_id": who,
                        "event_type": ["enter"] * 2, "session_id": [0, 0], "streamer_id": [0, 0],
                        "product_id": [-1, -1], "amount": [np.nan] * 2})  # fmt: skip
    policy.observe({"events": day})
    sessions = policy.service.sessions
    assert sessions.peek(who[0], int(ts[0])) is None
    assert sessions.peek(who[1], int(ts[0])) is not None


def test_the_coupon_trigger_refuses_without_consent():
    from tests.test_coupons import _trigger

    t = _trigger()
    t.observe(4, "cart", 900, 1)
    t.observe(5, "cart", 900, 1)
    t.consent = ConsentBook([Decision(4, "coupons", False, 0)])
    assert t.decide(4, 1300).reason == "no_consent"
    assert t.decide(5, 1300).reason != "no_consent"
