"""The synthetic world: files, exact schema, determinism, and the planted structure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.pseudonym import pseudonymise
from recsys.data.schema import EVENT_REQUIREMENTS, EVENT_TYPES, TABLES, pandas_dtype
from recsys.data.tables import ENTITY_TABLES, SCHEMA_VERSION, load_tables, read_manifest
from recsys.simulation import PRESETS, SimConfig, purchase_probability, simulate

SHOPPING = ["click", "cart", "purchase", "coupon_claim"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    simulate(SimConfig.from_preset("tiny"), out)
    return out


@pytest.fixture(scope="module")
def world(tiny_dir):
    return load_tables(tiny_dir)


@pytest.fixture(scope="module")
def truth_users(tiny_dir) -> pd.DataFrame:
    return pd.read_parquet(tiny_dir / "truth" / "users.parquet")


def _parquet_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*.parquet"))


def test_writes_tables_truth_and_manifest(tiny_dir, world):
    config = PRESETS["tiny"]
    names = {str(p) for p in _parquet_files(tiny_dir)}
    assert {f"{t}.parquet" for t in ENTITY_TABLES} <= names
    assert {f"events/part-{d:05d}.parquet" for d in range(config.n_days)} <= names
    for t in ("users", "trusted_streamers", "coupon_effect", "streamers", "products"):
        assert f"truth/{t}.parquet" in names
    manifest = read_manifest(tiny_dir)
    assert manifest["preset"] == "tiny" and manifest["seed"] == 0
    assert manifest["schema_version"] == SCHEMA_VERSION
    for name in (*ENTITY_TABLES, "events"):
        assert manifest["counts"][name] == len(world.table(name))
    counts = world.events.event_type.value_counts()
    assert manifest["event_counts"] == {t: int(counts.get(t, 0)) for t in EVENT_TYPES}
    assert all(manifest["event_counts"][t] > 0 for t in EVENT_TYPES)
    assert 10_000 <= len(world.events) <= 30_000
    assert len(world.users) == config.n_users and len(world.products) == config.n_products


def test_schema_dtypes_are_exact(world):
    for name, schema in TABLES.items():
        df = world.table(name)
        assert list(df.columns) == schema.names, name
        for col in schema.columns:
            expected = pd.Series([], dtype=pandas_dtype(col)).dtype
            assert df[col.name].dtype == expected, (name, col.name, df[col.name].dtype)


def test_event_requirements_ids_and_order(world):
    ev = world.events
    for kind, required in EVENT_REQUIREMENTS.items():
        rows = ev[ev.event_type == kind]
        for field in required:
            assert rows[field].notna().all(), (kind, field)
    assert (ev.event_id.to_numpy() == np.arange(len(ev))).all()
    assert (np.diff(ev.ts.to_numpy()) >= 0).all()
    for col in ("dwell_s", "amount", "coupon_value"):
        assert (ev[col].dropna() >= 0).all(), col
    assert ev.user_id.isin(world.users.user_id).all()
    assert ev.session_id.dropna().isin(world.live_sessions.session_id).all()
    assert ev.streamer_id.dropna().isin(world.streamers.streamer_id).all()
    assert ev.product_id.dropna().isin(world.products.product_id).all()
    assert world.users.user_id.is_unique and world.live_sessions.session_id.is_unique


def test_user_ids_are_pseudonyms(world):
    config = PRESETS["tiny"]
    raw = np.arange(config.n_users)
    assert (world.users.user_id.to_numpy() == pseudonymise(raw, config.pseudonym_key)).all()


def test_same_seed_same_bytes_other_seed_differs(tiny_dir, tmp_path):
    again, other = tmp_path / "again", tmp_path / "other"
    simulate(SimConfig.from_preset("tiny"), again)
    simulate(SimConfig.from_preset("tiny", seed=1), other)
    files = _parquet_files(tiny_dir)
    assert files == _parquet_files(again)
    for rel in files:
        assert (tiny_dir / rel).read_bytes() == (again / rel).read_bytes(), rel
    assert (tiny_dir / "manifest.json").read_bytes() == (again / "manifest.json").read_bytes()
    part = Path("events/part-00000.parquet")
    assert (tiny_dir / part).read_bytes() != (other / part).read_bytes()


def test_refuses_to_overwrite_without_flag(tiny_dir):
    with pytest.raises(FileExistsError, match="overwrite=True"):
        simulate(SimConfig.from_preset("tiny"), tiny_dir)


def test_session_events_only_while_live_and_in_the_streamers_room(world):
    ev = world.events[world.events.session_id.notna()]
    sessions = world.live_sessions.set_index("session_id")
    s = sessions.loc[ev.session_id.astype("int64")]
    assert (ev.ts.to_numpy() >= s.start_ts.to_numpy()).all()
    assert (ev.ts.to_numpy() <= s.end_ts.to_numpy()).all()
    assert (ev.streamer_id.to_numpy() == s.streamer_id.to_numpy()).all()
    assert set(ev.event_type) == set(EVENT_TYPES) - {"refund"}


def test_showcase_segments_do_not_overlap_and_lie_in_sessions(world):
    sc = world.showcase.merge(world.live_sessions, on="session_id", suffixes=("", "_session"))
    assert (sc.start_ts >= sc.start_ts_session).all() and (sc.end_ts <= sc.end_ts_session).all()
    assert (sc.end_ts > sc.start_ts).all()
    sc = sc.sort_values(["session_id", "start_ts"])
    same = sc.session_id.to_numpy()[1:] == sc.session_id.to_numpy()[:-1]
    assert (sc.start_ts.to_numpy()[1:][same] >= sc.end_ts.to_numpy()[:-1][same]).all()


def test_shopping_references_the_product_presented_at_that_time(world):
    ev = world.events[world.events.event_type.isin(SHOPPING)].copy()
    assert ev.session_id.notna().all() and ev.streamer_id.notna().all()
    ev["session_id"] = ev.session_id.astype("int64")
    sc = world.showcase.sort_values("start_ts")
    hit = pd.merge_asof(
        ev.sort_values("ts"),
        sc,
        left_on="ts",
        right_on="start_ts",
        by="session_id",
        suffixes=("", "_shown"),
    )
    assert (hit.product_id.astype("int64") == hit.product_id_shown).all()
    assert (hit.ts < hit.end_ts).all()


def test_leave_is_enter_plus_dwell(world):
    ev = world.events
    enter = ev[ev.event_type == "enter"].sort_values(["user_id", "session_id", "ts"], kind="stable")
    leave = ev[ev.event_type == "leave"].sort_values(["user_id", "session_id", "ts"], kind="stable")
    assert len(enter) == len(leave)
    assert (enter.user_id.to_numpy() == leave.user_id.to_numpy()).all()
    assert (enter.session_id.to_numpy() == leave.session_id.to_numpy()).all()
    np.testing.assert_array_equal(
        enter.ts.to_numpy() + leave.dwell_s.to_numpy(), leave.ts.to_numpy()
    )
    assert (leave.dwell_s >= 1).all()
    # Visits of one user to one room alternate: each enter comes after the previous leave.
    nxt = enter.ts.to_numpy()[1:]
    same = (enter.user_id.to_numpy()[1:] == enter.user_id.to_numpy()[:-1]) & (
        enter.session_id.to_numpy()[1:] == enter.session_id.to_numpy()[:-1]
    )
    assert (nxt[same] > leave.ts.to_numpy()[:-1][same]).all()


def test_amounts_follow_price_coupon_and_refunds(world):
    ev = world.events
    price = world.products.set_index("product_id").price
    buy = ev[ev.event_type == "purchase"]
    expected = price.loc[buy.product_id.astype("int64")].to_numpy() - buy.coupon_value.fillna(0)
    np.testing.assert_allclose(buy.amount.to_numpy(), expected.to_numpy(), atol=1e-6)
    refund = ev[ev.event_type == "refund"]
    assert len(refund) > 0 and refund.session_id.isna().all()
    key = ["user_id", "product_id", "amount"]
    bought = buy[key + ["ts"]].rename(columns={"ts": "bought_ts"})
    matched = refund[key + ["ts", "event_id"]].merge(bought, on=key)
    earlier = matched[matched.bought_ts < matched.ts].event_id.unique()
    assert len(earlier) == len(refund)  # every refund repays an earlier purchase in full


def test_purchases_concentrate_in_top_interest(world, truth_users):
    buy = world.events[world.events.event_type == "purchase"]
    cat = world.products.set_index("product_id").category.loc[buy.product_id.astype("int64")]
    top = truth_users.set_index("user_id").top_interests.str.split().str[0]
    in_top = cat.to_numpy() == top.loc[buy.user_id].to_numpy()
    n_cat = world.products.category.nunique()
    ratio = in_top.sum() / ((~in_top).sum() / (n_cat - 1))
    assert len(buy) > 100 and ratio > 3.0, ratio


def test_attribute_questions_come_from_users_with_that_attribute(world, truth_users):
    com = world.events[world.events.event_type == "comment"]
    body = truth_users.set_index("user_id").body_type.loc[com.user_id].to_numpy()
    skin = truth_users.set_index("user_id").skin_type.loc[com.user_id].to_numpy()
    petite = com.comment.to_numpy() == "小个子能穿吗"
    sensitive = com.comment.to_numpy() == "敏感肌能用吗"
    assert petite.sum() > 0 and (body[petite] == "小个子").all()
    assert sensitive.sum() > 0 and (skin[sensitive] == "敏感肌").all()


def test_truth_coupon_uplift_grows_with_price_sensitivity(tiny_dir, truth_users):
    effect = pd.read_parquet(tiny_dir / "truth" / "coupon_effect.parquet")
    users = truth_users.set_index("user_id").loc[effect.user_id]
    recomputed = purchase_probability(
        interest=effect.interest,
        trust=0.0,
        price=effect.reference_price,
        purchasing_power=users.purchasing_power.to_numpy(),
        price_sensitivity=users.price_sensitivity.to_numpy(),
        coupon_value=effect.coupon_value,
    )
    np.testing.assert_allclose(recomputed, effect.p_purchase_with)
    np.testing.assert_allclose(effect.p_purchase_with - effect.p_purchase_without, effect.uplift)
    assert (effect.uplift > 0).all()
    sens = users.price_sensitivity.to_numpy()
    for value, rows in effect.groupby("coupon_value"):
        s = sens[rows.index]
        assert rows.uplift[s >= 0.6].mean() > 3 * rows.uplift[s <= 0.3].mean(), value


def test_purchase_probability_is_monotone():
    base = dict(interest=0.5, trust=0.0, price=100.0, purchasing_power=150.0)
    assert purchase_probability(**base, price_sensitivity=0.9, coupon_value=20.0) > (
        purchase_probability(**base, price_sensitivity=0.9, coupon_value=10.0)
    )
    more_interest = purchase_probability(**{**base, "interest": 0.9}, price_sensitivity=0.5)
    assert more_interest > purchase_probability(**base, price_sensitivity=0.5)
    expensive = purchase_probability(**{**base, "price": 400.0}, price_sensitivity=0.5)
    assert expensive < purchase_probability(**base, price_sensitivity=0.5)


def test_simulated_coupons_lift_sensitive_users_more(tmp_path):
    out = tmp_path / "busy"
    simulate(SimConfig.from_preset("tiny", n_users=8000, n_streamers=150, n_products=1500), out)
    ev = load_tables(out).events
    sens = pd.read_parquet(out / "truth" / "users.parquet").set_index("user_id").price_sensitivity
    key = ["user_id", "session_id", "product_id"]
    flags = {k: ev[ev.event_type == k][key].drop_duplicates().assign(**{k: True}) for k in SHOPPING}
    clicks = flags["click"]
    for kind in ("coupon_claim", "purchase"):
        clicks = clicks.merge(flags[kind], on=key, how="left").fillna({kind: False})
    clicks["sensitive"] = sens.loc[clicks.user_id].to_numpy() >= 0.6
    clicks["insensitive"] = sens.loc[clicks.user_id].to_numpy() <= 0.35

    def lift(group: str) -> float:
        rows = clicks[clicks[group]]
        rate = rows.groupby("coupon_claim").purchase.mean()
        return rate[True] - rate[False]

    assert lift("sensitive") > 0.08
    assert lift("sensitive") > 2 * lift("insensitive")


def test_config_presets_and_validation():
    tiny = SimConfig.from_preset("tiny", seed=7)
    assert tiny.seed == 7 and tiny.preset == "tiny" and PRESETS["tiny"].seed == 0
    assert set(PRESETS) == {"tiny", "small", "medium", "large", "catalog100k"}
    with pytest.raises(ValueError, match="unknown preset"):
        SimConfig.from_preset("huge")
    with pytest.raises(TypeError, match="no fields"):
        SimConfig.from_preset("tiny", n_user=3)
    with pytest.raises(ValueError, match="categories"):
        SimConfig(categories=("beauty", "cars"))
    with pytest.raises(ValueError, match="start_date"):
        SimConfig(start_date="2024-13-01")
    with pytest.raises(AttributeError):
        tiny.seed = 1  # type: ignore[misc]
    assert json.loads(json.dumps(tiny.to_dict()))["categories"][0] == "beauty"
