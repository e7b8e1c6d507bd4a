"""User profiles and tags: each rule on hand-made events, incremental == full, storage, cohorts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from recsys.data.schema import TABLES
from recsys.data.tables import LiveCommerceTables, conform, load_tables
from recsys.profiling import (
    PROFILE_SCHEMA_VERSION,
    TAG_COLUMNS,
    Catalog,
    CohortIndex,
    Expression,
    ExpressionError,
    Profiler,
    ProfileStore,
    TagRules,
    assign_tags,
    cohort,
    fit_segments,
    merge_all,
    profile_matrix,
)
from recsys.profiling.config import TAGS_YAML
from recsys.simulation import SimConfig, simulate

DAY = 86_400
T0 = 1_717_372_800  # 2024-06-03 08:00 +08:00
BEAUTY_BUYER, COUPON_HUNTER, FAN, DOMESTIC_BUYER, INGREDIENT_ASKER = 1001, 1002, 1003, 1004, 1005


class EventLog:
    """Builds an events table row by row (test data only)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, kind: str, ts: int, user: int, streamer: int | None = None, **fields) -> None:
        room = {"session_id": streamer, "streamer_id": streamer} if streamer is not None else {}
        self.rows.append({"ts": ts, "user_id": user, "event_type": kind} | room | fields)

    def visit(self, user: int, streamer: int, ts: int, dwell: float = 300.0) -> None:
        self.add("enter", ts, user, streamer)
        self.add("leave", ts + int(dwell), user, streamer, dwell_s=dwell)

    def click(self, user: int, streamer: int, product: int, ts: int) -> None:
        self.add("click", ts, user, streamer, product_id=product)

    def buy(self, user, streamer, product, ts, price, coupon=None) -> None:
        amount = price - (coupon or 0.0)
        self.add(
            "purchase", ts, user, streamer, product_id=product, amount=amount, coupon_value=coupon
        )

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows).sort_values("ts", kind="stable").reset_index(drop=True)
        df["event_id"] = np.arange(len(df))
        for col in TABLES["events"].names:
            if col not in df.columns:
                df[col] = None
        return conform(df, TABLES["events"])


def catalogue() -> tuple[pd.DataFrame, pd.DataFrame]:
    products = pd.DataFrame(
        {
            "product_id": [100, 101, 102, 200, 201, 300, 301],
            "category": ["beauty", "beauty", "beauty", "food", "food", "skincare", "skincare"],
            "brand": ["花雪", "Lumie", "云锦", "青禾", "Vera", "木润", "Elden"],
            "imported": [False, True, False, False, True, False, True],
            "price": [100.0, 300.0, 50.0, 30.0, 60.0, 150.0, 400.0],
            "keywords": ["口红"] * 7,
        }
    )
    streamers = pd.DataFrame(
        {
            "streamer_id": [1, 2, 3, 4, 5],
            "category": ["beauty", "beauty", "food", "skincare", "food"],
            "follower_count": [1000] * 5,
        }
    )
    return products, streamers


def hand_made_events() -> pd.DataFrame:
    log = EventLog()
    for d in range(10):  # mostly beauty, one food visit
        t = T0 + d * DAY
        log.visit(BEAUTY_BUYER, 1 + d % 2, t)
        log.click(BEAUTY_BUYER, 1 + d % 2, 100, t + 10)
        if d % 3 == 0:
            log.buy(BEAUTY_BUYER, 1 + d % 2, 100, t + 20, 100.0)
    log.visit(BEAUTY_BUYER, 3, T0 + 5 * DAY + 3600)
    for d in range(12):  # claims every coupon, pays with coupons, asks about prices
        t = T0 + d * DAY + 7200
        log.visit(COUPON_HUNTER, 5, t)
        log.click(COUPON_HUNTER, 5, 200, t + 10)
        log.add("coupon_claim", t + 20, COUPON_HUNTER, 5, product_id=200, coupon_value=5.0)
        if d % 2 == 0:
            log.buy(COUPON_HUNTER, 5, 200, t + 30, 30.0, coupon=5.0)
        if d % 3 == 0:
            log.add("comment", t + 40, COUPON_HUNTER, 5, comment="有优惠券吗")
    log.add("follow", T0 + 3600, FAN, 4)
    for d in range(12):  # watches streamer 4 every day, long, and buys from them
        t = T0 + d * DAY + 3 * 3600
        log.visit(FAN, 4, t, dwell=1800.0)
        log.click(FAN, 4, 300, t + 60)
        if d % 3 == 0:
            log.buy(FAN, 4, 300, t + 90, 150.0)
    log.visit(FAN, 1, T0 + 2 * DAY)
    for d in range(30):  # only domestic brands
        t = T0 + d * 3600 * 8
        product, streamer, price = [(100, 1, 100.0), (102, 2, 50.0), (200, 3, 30.0)][d % 3]
        log.click(DOMESTIC_BUYER, streamer, product, t)
        log.buy(DOMESTIC_BUYER, streamer, product, t + 5, price)
    for d, text in enumerate(["敏感肌能用吗", "成分温和吗", "会过敏吗", "油皮适合吗", "来了来了"]):
        t = T0 + d * DAY + 5 * 3600
        log.visit(INGREDIENT_ASKER, 2, t)
        log.add("comment", t + 30, INGREDIENT_ASKER, 2, comment=text)
    rng = np.random.default_rng(0)
    for user in range(2000, 2020):  # background: a few visits, no coupons, some imports
        for k in range(3):
            t = T0 + int(rng.integers(0, 10 * DAY))
            streamer = int(rng.integers(1, 6))
            product = {1: 101, 2: 101, 3: 201, 4: 301, 5: 201}[streamer]
            log.visit(user, streamer, t, dwell=120.0)
            log.click(user, streamer, product, t + 5)
            if k == 0:
                log.buy(user, streamer, product, t + 9, 60.0)
    return log.frame()


@pytest.fixture(scope="module")
def hand() -> Profiler:
    products, streamers = catalogue()
    return Profiler(catalog=Catalog.from_tables(products, streamers))


@pytest.fixture(scope="module")
def hand_result(hand):
    return hand.build(hand_made_events())


def _tags_of(result, user: int) -> pd.DataFrame:
    return result.tags[result.tags["user_id"] == user].set_index("tag_id")


def test_beauty_buyer_is_beauty_enthusiast_with_provenance(hand_result):
    tags = _tags_of(hand_result, BEAUTY_BUYER)
    row = tags.loc["interest_beauty"]
    assert row["name_zh"] == "美妆爱好者" and row["name_en"] == "beauty enthusiast"
    assert "interest_beauty >= 0.135" in row["provenance"]
    assert "interest_beauty=0.8" in row["provenance"]  # the user's value is quoted
    assert 0.5 < row["confidence"] <= 1.0
    assert "interest_skincare" not in tags.index


def test_coupon_heavy_user_is_price_sensitive(hand_result):
    tags = _tags_of(hand_result, COUPON_HUNTER)
    assert tags.loc["price_sensitive", "name_zh"] == "价格敏感"
    users = hand_result.profiles.users.set_index("user_id")
    assert users.loc[COUPON_HUNTER, "price_sensitivity"] == users["price_sensitivity"].max()
    assert "price_sensitive" not in _tags_of(hand_result, DOMESTIC_BUYER).index


def test_repeat_buyer_is_loyal_to_streamer(hand_result):
    tags = _tags_of(hand_result, FAN)
    row = tags.loc["loyal_streamer:4"]
    assert row["name_zh"] == "主播4的铁粉" and row["entity"] == "4"
    assert row["confidence"] > 0.99 and "loyalty=" in row["provenance"]
    assert "loyal_streamer:1" not in tags.index  # one short visit is not loyalty
    users = hand_result.profiles.users.set_index("user_id")
    assert list(users.loc[FAN, "trusted_streamers"]) == [4]


def test_domestic_buyer_is_domestic_supporter(hand_result):
    assert (
        _tags_of(hand_result, DOMESTIC_BUYER).loc["domestic_supporter", "name_zh"] == "国货支持者"
    )
    assert "domestic_supporter" not in _tags_of(hand_result, BEAUTY_BUYER).index


def test_ingredient_questions_give_ingredient_focus(hand_result):
    row = _tags_of(hand_result, INGREDIENT_ASKER).loc["topic_focus_ingredients"]
    assert row["name_zh"] == "关注成分"
    assert "topic_ingredients=4" in row["provenance"]


def test_recent_interest_outweighs_old(hand):
    log = EventLog()
    for k in range(5):
        log.visit(1, 1, T0 + k * 600)  # beauty, 60 days before the food visits
        log.visit(1, 3 + 2 * (k % 2), T0 + 60 * DAY + k * 600)  # food, two streamers
        log.visit(1, 2, T0 + k * 900)
    users = hand.build(log.frame()).profiles.users
    assert users.loc[0, "interest_food"] > users.loc[0, "interest_beauty"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, LiveCommerceTables]:
    out = tmp_path_factory.mktemp("tiny-world")
    simulate(SimConfig.from_preset("tiny", seed=3), out)
    return out, load_tables(out)


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[c for c in frame.columns if frame[c].dtype != object]]


def test_incremental_update_equals_full_recompute(tiny):
    _, tables = tiny
    profiler = Profiler.for_tables(tables)
    events = tables.events
    full = profiler.build(events)
    cut1, cut2 = np.quantile(events["ts"], [0.4, 0.7])
    first = profiler.build(events[events["ts"] < cut1])
    mid = profiler.update(first.stats, events[(events["ts"] >= cut1) & (events["ts"] < cut2)])
    last = profiler.update(mid.stats, events[events["ts"] >= cut2])
    a, b = _numeric(full.profiles.users), _numeric(last.profiles.users)
    assert list(a.columns) == list(b.columns) and len(a) == len(b) > 300
    np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=1e-9, atol=1e-12)
    counts = [c for c in a.columns if c.startswith("n_") or c.startswith("engagement_")]
    assert (a[counts].to_numpy() == b[counts].to_numpy()).all()  # counts are exact
    for x, y in zip(
        full.profiles.users["trusted_streamers"],
        last.profiles.users["trusted_streamers"],
        strict=True,
    ):
        assert np.array_equal(x, y)
    pd.testing.assert_frame_equal(
        full.tags.drop(columns=["provenance", "confidence"]),
        last.tags.drop(columns=["provenance", "confidence"]),
    )
    np.testing.assert_allclose(last.tags["confidence"], full.tags["confidence"], rtol=1e-9)


def test_merge_is_order_free(tiny):
    _, tables = tiny
    profiler = Profiler.for_tables(tables)
    ts = tables.events["ts"]
    cuts = np.quantile(ts, [0.3, 0.6])
    parts = [ts < cuts[0], (ts >= cuts[0]) & (ts < cuts[1]), ts >= cuts[1]]
    a, b, c = (profiler.stats(tables.events[m]) for m in parts)
    at_once, reordered = merge_all([a, b, c]), c.merge(a).merge(b)
    assert at_once.ref_ts == reordered.ref_ts == int(ts.max())
    pd.testing.assert_frame_equal(at_once.users, reordered.users, rtol=1e-12)
    pd.testing.assert_frame_equal(at_once.pairs, reordered.pairs, rtol=1e-12)


def test_every_tag_has_provenance_and_valid_confidence(tiny):
    _, tables = tiny
    result = Profiler.for_tables(tables, n_segments=4).build(tables.events)
    tags = result.tags
    assert list(tags.columns) == TAG_COLUMNS and len(tags) > 500
    assert tags["provenance"].str.len().min() > 30
    assert tags["confidence"].between(0.0, 1.0).all()
    assert not tags.duplicated(["user_id", "tag_id"]).any()
    rule_rows = tags[~tags["rule_id"].str.startswith("segment")]
    assert (rule_rows["provenance"].str.contains(" holds with ")).all()
    assert tags["tag_id"].str.startswith("segment:").sum() == len(result.profiles.users)


def test_storage_round_trip_with_schema_version(tiny, tmp_path):
    _, tables = tiny
    profiler = Profiler.for_tables(tables)
    full = profiler.build(tables.events)
    store = ProfileStore(tmp_path / "profiles")
    cut = np.median(tables.events["ts"])
    store.update(profiler, tables.events[tables.events["ts"] < cut])  # starts the store
    result = store.update(profiler, tables.events[tables.events["ts"] >= cut])
    users = _numeric(result.profiles.users).to_numpy()
    np.testing.assert_allclose(users, _numeric(full.profiles.users).to_numpy(), rtol=1e-9)
    meta = pq.read_schema(store.profiles_path).metadata[b"recsys.profiling"]
    assert f'"schema_version": {PROFILE_SCHEMA_VERSION}'.encode() in meta
    assert (pd.read_parquet(store.profiles_path)["schema_version"] == PROFILE_SCHEMA_VERSION).all()
    loaded = store.load_profiles()
    pd.testing.assert_frame_equal(loaded.users, result.profiles.users, check_dtype=False)
    assert (loaded.categories, loaded.as_of_ts) == (
        result.profiles.categories,
        full.profiles.as_of_ts,
    )
    pd.testing.assert_frame_equal(store.load_tags(), result.tags)
    pd.testing.assert_frame_equal(store.load_stats().users, result.stats.users)
    stale = pq.read_table(store.profiles_path).replace_schema_metadata(
        {b"recsys.profiling": b'{"schema_version": 0}'}
    )
    pq.write_table(stale, store.profiles_path)
    with pytest.raises(ValueError, match="schema version 0"):
        store.load_profiles()


def _tag_table(rows: list[tuple[int, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "tag_id", "confidence"])


def test_cohort_query_semantics():
    tags = _tag_table(
        [(1, "a", 0.9), (1, "b", 0.9), (2, "a", 0.9), (2, "b", 0.2), (3, "b", 0.8), (4, "c", 0.5)]
    )
    index = CohortIndex(tags, universe=[1, 2, 3, 4, 5])
    assert index.query(all_of=["a", "b"]).tolist() == [1, 2]
    assert index.query(all_of=["a", "b"], min_confidence=0.5).tolist() == [1]
    assert index.query(any_of=["a", "c"]).tolist() == [1, 2, 4]
    assert index.query(none_of=["b"]).tolist() == [4, 5]
    assert index.query(none_of=["b"], min_confidence=0.5).tolist() == [2, 4, 5]  # weak b kept
    assert index.query(any_of=["b"], none_of=["a"]).tolist() == [3]
    assert index.query(all_of=["a", "unknown"]).tolist() == []
    assert index.query(none_of=["unknown"]).tolist() == [1, 2, 3, 4, 5]
    assert index.query().tolist() == [1, 2, 3, 4, 5]
    assert cohort(tags, all_of=["a", "a"]).tolist() == [1, 2]  # repeats count once
    with pytest.raises(ValueError, match="not in the universe"):
        CohortIndex(tags, universe=[1, 2])


def test_rule_added_in_config_works_without_code(hand, tmp_path):
    raw = yaml.safe_load(TAGS_YAML.read_text(encoding="utf-8"))
    raw["rules"].append(
        {
            "id": "streamer_fan_buyer",
            "name": {"zh": "追星买家", "en": "buys from a favourite streamer"},
            "when": "n_follows >= 1 and n_purchases >= 3",
            "confidence": "saturate(n_purchases, 4)",
        }
    )
    path = tmp_path / "tags.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    result = hand.build(hand_made_events())
    tags = assign_tags(result.profiles, TagRules.from_yaml(path))
    fans = tags[tags["tag_id"] == "streamer_fan_buyer"]
    assert fans["user_id"].tolist() == [FAN]
    assert (
        fans["provenance"].iloc[0].startswith("buys from a favourite streamer [streamer_fan_buyer]")
    )
    assert np.isclose(fans["confidence"].iloc[0], 1 - np.exp(-4 / 4))


def test_bad_rules_fail_clearly(hand_result):
    with pytest.raises(ExpressionError, match="unknown function"):
        Expression("__import__('os').system('x')")
    with pytest.raises(ExpressionError, match="Attribute is not allowed"):
        Expression("a.real > 1")
    with pytest.raises(ValueError, match="missing keys"):
        TagRules.from_dict({"rules": [{"id": "x", "when": "a > 1"}]})
    rules = TagRules.from_dict(
        {
            "rules": [
                {"id": "x", "name": {"zh": "x", "en": "x"}, "when": "nope > 1", "confidence": "1"}
            ]
        }
    )
    with pytest.raises(ValueError, match=r"rule 'x' reads unknown features \['nope'\]"):
        assign_tags(hand_result.profiles, rules)


def test_expression_semantics():
    cols = {"a": np.array([1.0, 2.0, np.nan]), "b": np.array([0.0, 5.0, 1.0])}
    assert Expression("a >= 2 or b < 1").evaluate(cols, 3).tolist() == [True, True, False]
    assert Expression("not (1 < a < 3)").evaluate(cols, 3).tolist() == [True, False, True]
    np.testing.assert_allclose(
        Expression("saturate(b, 5)").evaluate(cols, 3), 1 - np.exp(-cols["b"] / 5)
    )
    assert Expression("0.5").evaluate(cols, 3).tolist() == [0.5, 0.5, 0.5]


def test_profile_matrix_and_segments(tiny):
    _, tables = tiny
    result = Profiler.for_tables(tables).build(tables.events)
    user_ids, x, names = profile_matrix(result.profiles)
    assert x.dtype == np.float32 and x.shape == (len(user_ids), len(names)) and np.isfinite(x).all()
    assert np.array_equal(user_ids, np.sort(user_ids)) and "interest_beauty" in names
    s1, s2 = fit_segments(x, names, k=5, seed=7), fit_segments(x, names, k=5, seed=7)
    np.testing.assert_array_equal(s1.centroids, s2.centroids)
    label, confidence = s1.assign(x)
    assert np.bincount(label, minlength=5).tolist() == s1.sizes.tolist()
    assert ((confidence >= 0) & (confidence <= 1)).all()
    assert all(" sd" in d for d in s1.describe())


def test_bad_events_fail_with_row_and_field(hand):
    events = hand_made_events()
    bad = events.copy()
    bad.loc[3, "event_type"] = "teleport"
    with pytest.raises(ValueError, match="row 3: field 'event_type'"):
        hand.build(bad)
    bad = events.copy()
    bad.loc[5, "product_id"] = 999
    bad.loc[5, "event_type"] = "click"
    with pytest.raises(ValueError, match="row 5: field 'product_id': id 999"):
        hand.build(bad)
    with pytest.raises(ValueError, match="missing columns"):
        hand.build(events.drop(columns=["dwell_s"]))
