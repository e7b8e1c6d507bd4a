"""The market: logs in the project's schema, exact resume, refused decisions, honest truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.tables import load_tables
from recsys.data.validation import validate
from recsys.market import (
    DEFAULT_TIERS,
    CouponCatalogue,
    CouponGrants,
    CouponTier,
    DecisionError,
    Market,
    MarketConfig,
    Messages,
    OraclePolicy,
    Policy,
    PopularityPolicy,
    RandomPolicy,
    Slates,
    daily_kpis,
)
from recsys.market.env import LOG_TABLES

TINY = MarketConfig(preset="tiny", seed=0)


def _files(folder) -> dict[str, pd.DataFrame]:
    return {str(p.relative_to(folder)): pd.read_parquet(p) for p in
            sorted(folder.rglob("part-*.parquet"))}  # fmt: skip


def test_market_logs_are_a_valid_world_folder(tmp_path):
    market = Market(TINY, tmp_path)
    counts = market.run(RandomPolicy(seed=1), days=2)
    assert [c["requests"] > 0 and c["impressions"] > 0 for c in counts] == [True, True]
    report = validate(load_tables(tmp_path), mode="strict")
    assert report.counts["events"].rejected == 0
    imp = pd.read_parquet(tmp_path / "impressions" / "part-00000.parquet")
    ev = pd.read_parquet(tmp_path / "events" / "part-00000.parquet")
    # Every purchase from a slate is a purchase event of that viewer, product and amount.
    bought = imp.loc[imp["purchase"], ["user_id", "product_id", "amount"]]
    logged = ev.loc[ev["event_type"] == "purchase", ["user_id", "product_id", "amount"]]
    assert len(bought) > 0
    assert len(bought.merge(logged, on=["user_id", "product_id", "amount"])) >= len(bought)


def test_a_stopped_run_resumes_to_the_same_logs(tmp_path):
    """A learning policy (popularity over the observed days) stopped after day 0 and brought
    back in a new market object: the same files as an uninterrupted run."""
    Market(TINY, tmp_path / "whole").run(PopularityPolicy())
    Market(TINY, tmp_path / "parts").run(PopularityPolicy(), days=1)
    Market(TINY, tmp_path / "parts").run(PopularityPolicy())
    whole, parts = _files(tmp_path / "whole"), _files(tmp_path / "parts")
    assert whole.keys() == parts.keys() and len(whole) == 3 * len(LOG_TABLES)
    for name in whole:
        pd.testing.assert_frame_equal(whole[name], parts[name], obj=name)


class _Fixed(Policy):
    """Shows one given card to every request; grants given coupons on day 0."""

    name = "fixed"

    def __init__(self, session: int, product: int, grants: CouponGrants | None = None):
        self.session, self.product, self.grants = session, product, grants

    def recommend(self, requests, market):
        s = np.full((len(requests), requests.k), -1, dtype=np.int64)
        p = s.copy()
        s[:, 0], p[:, 0] = self.session, self.product
        return Slates(s, p)

    def grant_coupons(self, viewers, day, market):
        return self.grants or CouponGrants.none()


def test_impossible_decisions_are_refused_and_nothing_is_logged(tmp_path):
    big = CouponTier("flash_product_50", 50.0, scope="product", validity_s=1800)
    config = MarketConfig(preset="tiny", catalogue=CouponCatalogue((*DEFAULT_TIERS.tiers, big)))
    market = Market(config, tmp_path)
    shelf = market.view.shelf
    late = shelf.loc[shelf["start_ts"] > market.world.config.chunk_window(0)[1]].iloc[0]
    with pytest.raises(
        DecisionError,
        match=r"policy 'fixed', decision 'recommend', .*"
        r"field 'session_id': session not on air now",
    ):
        market.run(_Fixed(int(late["session_id"]), int(late["product_id"])), days=1)
    assert not list(tmp_path.glob("events/part-*")) and not list(tmp_path.glob("state/*"))
    viewer = int(market.view.users["user_id"].iloc[0])
    cheap = int(market.view.price.idxmin())
    bad = {
        "user_id": CouponGrants(np.array([12345]), np.array(["member_10"], dtype=object),
                                np.array([-1])),
        "tier": CouponGrants(np.array([viewer]), np.array(["free_lunch"], dtype=object),
                             np.array([-1])),
        "target_id": CouponGrants(np.array([viewer]), np.array(["flash_product_50"],
                                  dtype=object), np.array([cheap])),
    }  # fmt: skip
    assert market.view.price[cheap] <= 50.0  # the product coupon would exceed its price
    for field, grants in bad.items():
        with pytest.raises(
            DecisionError, match=f"decision 'grant_coupons', row 0, field '{field}'"
        ):
            market.run(_Fixed(-1, -1, grants), days=1)
    assert not list(tmp_path.glob("events/part-*"))


def test_the_oracle_beats_random_in_true_gmv(tmp_path):
    oracle_market = Market(TINY, tmp_path / "oracle")
    oracle_market.run(OraclePolicy(oracle_market.truth))
    Market(TINY, tmp_path / "random").run(RandomPolicy(seed=0))
    oracle, rand = daily_kpis(tmp_path / "oracle"), daily_kpis(tmp_path / "random")
    # Same viewers and requests (arrivals do not depend on the policy).
    assert oracle["requests"].tolist() == rand["requests"].tolist()
    assert (oracle["true_gmv_per_viewer_lo"] > rand["true_gmv_per_viewer_hi"]).all()


class _RandomisedGrants(RandomPolicy):
    """Random slates; every viewer drawn into one coupon tier or none, uniformly."""

    name = "randomised_grants"

    def grant_coupons(self, viewers, day, market):
        arms = np.array([None, *[t.name for t in market.catalogue.tiers]], dtype=object)
        arm = arms[self.rng.integers(0, len(arms), len(viewers))]
        keep = arm != None  # noqa: E711 (an object array)
        tiers = arm[keep]
        scope = np.array([market.catalogue.tiers[market.catalogue.index(t)].scope for t in tiers])
        streamer = self.rng.choice(market.sessions["streamer_id"].unique(), len(tiers))
        cheap_ok = market.price.index[market.price.to_numpy() > 20.0]
        product = self.rng.choice(cheap_ok, len(tiers))
        target = np.where(scope == "streamer", streamer, np.where(scope == "product", product, -1))
        self.arm = pd.Series(arm, index=viewers)
        return CouponGrants(viewers[keep], tiers, target)


def _tier_estimates(folder, seed: int) -> list[tuple[str, float, float, float]]:
    """One day of randomised grants on the tiny world ``seed``: per tier, the difference in
    mean purchases per viewer from the logs alone, its standard error, and the planted mean
    uplift of the tier's viewers (sum over their cards of the true click probability times the
    purchase probability with their coupon minus without)."""
    config = MarketConfig(preset="tiny", seed=seed, open_rate=4.0, slate_size=20,
                          catalogue=UPLIFT_TIERS)  # fmt: skip
    policy = _RandomisedGrants(seed=seed)
    market = Market(config, folder)
    market.run(policy, days=1)
    logs = market.read_day(0)
    viewers = logs["requests"]["user_id"].unique()
    cards = logs["impressions"].merge(logs["truth/impressions"], on=["request_id", "position"])
    cards["uplift"] = cards["p_click"] * (cards["p_buy"] - cards["p_buy_no_grant"])
    per = cards.groupby("user_id")[["purchase", "uplift"]].sum().reindex(viewers, fill_value=0)
    per["arm"] = policy.arm.reindex(viewers).fillna("none").to_numpy()
    control = per.loc[per["arm"] == "none", "purchase"].to_numpy(float)
    out = []
    for tier in UPLIFT_TIERS.tiers:
        arm = per.loc[per["arm"] == tier.name]
        treated = arm["purchase"].to_numpy(float)
        se = np.sqrt(treated.var(ddof=1) / len(treated) + control.var(ddof=1) / len(control))
        out.append((tier.name, treated.mean() - control.mean(), se, arm["uplift"].mean()))
    return out


UPLIFT_TIERS = CouponCatalogue((*DEFAULT_TIERS.tiers, CouponTier("deep_40", 40.0)))


def test_estimated_coupon_uplift_from_logs_matches_the_planted_uplift(tmp_path):
    """Twenty one-day experiments with each viewer randomised into a tier or none: the 95%
    intervals of the estimates from the logs cover the planted uplift about 95% of the time,
    without bias, and the deep coupon's effect is found."""
    rows = pd.DataFrame(
        [(seed, *r) for seed in range(20) for r in _tier_estimates(tmp_path / str(seed), seed)],
        columns=["seed", "tier", "estimate", "se", "planted"],
    )
    z = (rows["estimate"] - rows["planted"]) / rows["se"]
    assert 0.88 <= (z.abs() <= 1.96).mean() <= 1.0  # 100 intervals; expected 0.95
    # No bias: the tiers of one experiment share its control group, so the z-scores are
    # averaged per experiment first and the twenty means tested against 0.
    per_seed = z.groupby(rows["seed"]).mean()
    assert abs(per_seed.mean()) < 3.0 * per_seed.std(ddof=1) / np.sqrt(len(per_seed))
    deep = rows.loc[rows["tier"] == "deep_40"]
    assert deep["planted"].mean() > 0.05
    pooled = deep["estimate"].mean() / (deep["estimate"].std(ddof=1) / np.sqrt(len(deep)))
    assert pooled > 3.0  # the deep coupon's uplift is seen in the logs
    none = rows.loc[rows["tier"] == "flash_product_15", "planted"]
    assert none.mean() < 0.01  # a coupon for a random product hardly ever matters


class _RandomisedMessages(RandomPolicy):
    """Random slates; each trigger messaged in-app (or by push where allowed) with probability
    one half, at the session's start minus a random lead of up to two hours."""

    name = "randomised_messages"

    def notify(self, triggers, market):
        send = self.rng.random(len(triggers)) < 0.5
        t = triggers.loc[send]
        consent = market.consent.set_index("user_id").reindex(t["user_id"])
        push = consent["push"].to_numpy(bool) & (self.rng.random(len(t)) < 0.5)
        lead = self.rng.integers(0, 7200, len(t))
        self.triggers = pd.concat([getattr(self, "triggers", None), triggers.assign(sent=send)])
        return Messages(t["trigger_id"].to_numpy(), np.where(push, "push", "in_app"),
                        t["start_ts"].to_numpy() - lead)  # fmt: skip


def _message_estimate(folder, seed: int) -> tuple[float, float, float]:
    """A tiny world's days with randomised messages (day 0 has no follows yet): the difference
    in entries into the triggering session between messaged and other triggers (from the logs),
    its standard error, and the planted mean effect of the sent messages."""
    market = Market(MarketConfig(preset="tiny", seed=seed, open_rate=0.5), folder)
    policy = _RandomisedMessages(seed=seed)
    market.run(policy)
    logs = [market.read_day(d) for d in range(market.n_days)]
    ev = pd.concat([day["events"] for day in logs])
    enters = ev.loc[ev["event_type"] == "enter"].groupby(["user_id", "session_id"]).size()
    trig = policy.triggers
    key = pd.MultiIndex.from_frame(trig[["user_id", "session_id"]].astype("int64"))
    entered = enters.reindex(key).fillna(0).to_numpy(float)  # entries, additive per visit
    sent = trig["sent"].to_numpy(bool)
    a, b = entered[sent], entered[~sent]
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    planted = pd.concat([day["truth/messages"] for day in logs])["p_visit"].mean()
    return a.mean() - b.mean(), se, planted


def test_estimated_message_uplift_from_logs_matches_the_planted_uplift(tmp_path):
    rows = np.array([_message_estimate(tmp_path / str(s), s) for s in range(12)])
    z = (rows[:, 0] - rows[:, 2]) / rows[:, 1]
    assert (np.abs(z) <= 1.96).mean() >= 0.75  # 12 intervals; expected 0.95
    assert abs(z.mean()) < 3.0 / np.sqrt(len(z))
    assert rows[:, 2].mean() > 0.05  # messages do bring viewers in
    pooled_se = np.sqrt((rows[:, 1] ** 2).sum()) / len(rows)
    assert rows[:, 0].mean() > 2.0 * pooled_se  # and the logs show it


def test_a_message_without_consent_is_refused(tmp_path):
    market = Market(TINY, tmp_path)

    class SmsEveryone(RandomPolicy):
        def notify(self, triggers, market):
            return Messages(triggers["trigger_id"].to_numpy(),
                            np.full(len(triggers), "sms", dtype=object),
                            triggers["start_ts"].to_numpy())  # fmt: skip

    with pytest.raises(DecisionError, match="field 'channel': the viewer has not consented"):
        market.run(SmsEveryone(seed=0), days=2)


class _Recorder(RandomPolicy):
    def notify(self, triggers, market):
        self.seen = pd.concat([getattr(self, "seen", None), triggers])
        return Messages.none()


def test_carted_items_featured_today_are_triggers(tmp_path):
    market = Market(TINY, tmp_path)
    policy = _Recorder(seed=0)
    market.run(policy)
    carted = policy.seen.loc[policy.seen["kind"] == "carted_item_featured"]
    assert len(carted) > 0 and set(policy.seen["kind"]) == {"followed_streamer_live",
                                                           "carted_item_featured"}  # fmt: skip
    ev = pd.concat([market.read_day(d)["events"] for d in range(market.n_days)])
    for row in carted.itertuples():
        mine = ev.loc[(ev["user_id"] == row.user_id) & (ev["product_id"] == row.product_id)
                      & (ev["ts"] < row.start_ts)]  # fmt: skip
        day_start = row.start_ts - (row.start_ts - market.world.config.chunk_window(0)[0]) % 86400
        before = mine.loc[mine["ts"] < day_start]  # what the platform knew at the day's start
        carts = before.loc[before["event_type"] == "cart", "ts"]
        bought = before.loc[before["event_type"] == "purchase", "ts"]
        assert len(carts) and (bought.empty or bought.max() < carts.max())  # carted, not bought
        slot = market.view.showcase
        assert ((slot["session_id"] == row.session_id) & (slot["product_id"] == row.product_id)
                & (slot["start_ts"] == row.start_ts)).any()  # fmt: skip


def test_the_trained_pipeline_is_a_policy(trained_two_tower, tmp_path):
    from recsys.cli.index import build_indexes
    from recsys.market.pipeline import PipelinePolicy
    from tests.conftest import compose_config

    ckpt, cache = trained_two_tower
    build_indexes(compose_config("index", [f"checkpoint={ckpt}", f"cache_dir={cache}"]))
    market = Market(TINY, tmp_path / "pipeline")
    start = market.world.config.chunk_window(0)[0]
    policy = PipelinePolicy.load(ckpt, start_ts=start, cache_dir=str(cache))
    market.run(policy, days=2)
    Market(TINY, tmp_path / "random").run(RandomPolicy(seed=0), days=2)
    pipeline, rand = daily_kpis(tmp_path / "pipeline"), daily_kpis(tmp_path / "random")
    assert (pipeline["impressions"] > 0).all()
    assert len(policy.service.sessions) > 0  # each day's events were fed back to the service
    assert (pipeline["true_gmv_per_viewer"] > rand["true_gmv_per_viewer"]).all()


def test_drift_moves_interests_and_keeps_runs_resumable(tmp_path):
    config = MarketConfig(preset="tiny", seed=0, drift=0.2)
    whole = Market(config, tmp_path / "whole")
    before = whole.world.users.interest.copy()
    whole.run(PopularityPolicy())
    after = whole.world.users.interest
    assert np.allclose(after.sum(axis=1), 1.0) and np.abs(after - before).sum(axis=1).mean() > 0.2
    rows = pd.Index(whole.truth.users).get_indexer(whole.world.users.pseudonym)
    assert np.array_equal(whole.truth.interest[rows], after)  # the response reads the same
    Market(config, tmp_path / "parts").run(PopularityPolicy(), days=2)
    Market(config, tmp_path / "parts").run(PopularityPolicy())
    a, b = _files(tmp_path / "whole"), _files(tmp_path / "parts")
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)
    stationary = _files(_run(tmp_path / "stationary", TINY))
    assert not stationary["events/part-00002.parquet"].equals(a["events/part-00002.parquet"])


def _run(folder, config):
    Market(config, folder).run(PopularityPolicy())
    return folder


class _Idle(Policy):
    """Shows nothing, grants nothing, sends nothing."""

    name = "idle"

    def recommend(self, requests, market):
        empty = np.full((len(requests), requests.k), -1, dtype=np.int64)
        return Slates(empty, empty.copy())


def test_an_idle_policy_leaves_the_world_as_recsys_simulate_writes_it(tiny_world_dir, tmp_path):
    market = Market(MarketConfig(preset="tiny", seed=0, start_day=1), tmp_path)
    market.run(_Idle())
    assert not (tmp_path / "events" / "part-00000.parquet").exists()  # burn-in: not logged
    for day in (1, 2):
        ours = pd.read_parquet(tmp_path / "events" / f"part-{day:05d}.parquet")
        world = pd.read_parquet(tiny_world_dir / "events" / f"part-{day:05d}.parquet")
        pd.testing.assert_frame_equal(ours, world)


def test_the_batched_pipeline_answers_as_the_service_does(trained_two_tower, tmp_path):
    """Every slate of a day, answered in chunks, equals GET /recommend's answer for the same
    viewer and moment (known and unknown viewers, in and out of live sessions)."""
    from recsys.cli.index import build_indexes
    from recsys.market.arrivals import arrivals
    from recsys.market.pipeline import PipelinePolicy
    from recsys.market.policy import Requests
    from tests.conftest import compose_config

    ckpt, cache = trained_two_tower
    build_indexes(compose_config("index", [f"checkpoint={ckpt}", f"cache_dir={cache}"]))
    market = Market(TINY, tmp_path / "m")
    start = market.world.config.chunk_window(1)[0]
    policy = PipelinePolicy.load(ckpt, start_ts=start, cache_dir=str(cache), chunk=7)
    user, ts = arrivals(market.world, market.schedule, 1, 1.0, np.random.default_rng(3))
    pseudonym = market.world.users.pseudonym[user][:150]
    requests = Requests(np.arange(len(pseudonym)), pseudonym, ts[:150], 10)
    slates = policy.recommend(requests, market.view)
    expected = np.full_like(slates.product_id, -1)
    for i, (u, t) in enumerate(zip(pseudonym.tolist(), ts[:150].tolist(), strict=True)):
        items = policy.service.recommend(u, t, 10, kinds=("product",)).items
        expected[i, : len(items)] = [item.id for item in items]
    assert (expected >= 0).any()
    np.testing.assert_array_equal(slates.product_id, expected)


@pytest.mark.parametrize("make", [lambda m: RandomPolicy(seed=5), lambda m: OraclePolicy(m.truth)])
def test_reference_policies_answer_in_parts_as_in_one_piece(tmp_path, make, monkeypatch):
    """Bounded memory (a part of the requests expanded into live cards at a time) changes no
    slate: the same answers with parts of 7 requests as in one piece."""
    import recsys.market.policies as policies
    from recsys.market.arrivals import arrivals
    from recsys.market.policy import Requests

    market = Market(TINY, tmp_path)
    user, ts = arrivals(market.world, market.schedule, 0, 1.0, np.random.default_rng(1))
    requests = Requests(np.arange(len(user)), market.world.users.pseudonym[user], ts, 10)
    whole = make(market).recommend(requests, market.view)
    monkeypatch.setattr(policies, "CHUNK", 7)
    parts = make(market).recommend(requests, market.view)
    assert len(requests) > 7 and (whole.product_id >= 0).any()
    np.testing.assert_array_equal(whole.product_id, parts.product_id)
    np.testing.assert_array_equal(whole.session_id, parts.session_id)
