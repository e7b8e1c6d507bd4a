"""Candidate features (point in time, KOL), the ESMM model and loss, the ranker and its reasons."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.data.tables import LiveCommerceTables
from recsys.models.esmm import ESMM, ESMMConfig
from recsys.ranking import (
    REASON_CODES,
    BlendWeights,
    CandidateFeaturizer,
    FeatureMatrix,
    Ranker,
    ReasonRules,
    rank_live,
    retrieve_live,
)
from recsys.ranking.candidate_features import FEATURE_NAMES
from recsys.ranking.esmm_training import (
    ImpressionDataset,
    esmm_metrics,
    esmm_settings,
    fit_esmm,
    roc_auc,
)
from recsys.ranking.pairs import IdIndex, Pairs
from recsys.simulation.impressions import impression_log, live_candidates
from recsys.simulation.response import WorldTruth
from recsys.tasks.esmm import ESMMTask, esmm_loss
from recsys.training.trainer import TrainerConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tiny_world, tiny_world_dir):
    return tiny_world, WorldTruth.from_folder(tiny_world_dir)


# ---------------------------------------------------------------- hand-built world


def _events(rows: list[tuple]) -> pd.DataFrame:
    """(ts, user, type, session, streamer, product, dwell) rows as an events table."""
    cols = ["ts", "user_id", "event_type", "session_id", "streamer_id", "product_id", "dwell_s"]
    frame = pd.DataFrame(rows, columns=cols)
    for c in ("session_id", "streamer_id", "product_id"):
        frame[c] = frame[c].astype("Int64")
    frame["dwell_s"] = frame["dwell_s"].astype(float)
    frame.insert(0, "event_id", np.arange(len(frame)))
    return frame.assign(amount=np.where(frame["event_type"] == "purchase", 99.0, np.nan),
                        coupon_value=np.nan, comment=None)  # fmt: skip


def _hand_tables(events: list[tuple]) -> LiveCommerceTables:
    """Streamer 7 (beauty) was live in session 50 (0-900) and is live in session 100
    (1000-5000): product 11 on show 1000-1500, product 10 from 1500. Streamer 8 (food) is
    live in session 200 presenting product 12."""
    return LiveCommerceTables(
        users=pd.DataFrame(
            {
                "user_id": [1, 2],
                "age_band": "25-34",
                "gender": "F",
                "region": "east",
                "signup_ts": 0,
            }
        ),  # fmt: skip
        streamers=pd.DataFrame(
            {"streamer_id": [7, 8], "category": ["beauty", "food"], "follower_count": 1}
        ),  # fmt: skip
        products=pd.DataFrame(
            {
                "product_id": [10, 11, 12],
                "category": ["beauty", "beauty", "food"],
                "brand": "b",
                "imported": False,
                "price": [100.0, 50.0, 20.0],
                "keywords": "",
            }
        ),  # fmt: skip
        live_sessions=pd.DataFrame(
            {
                "session_id": [50, 100, 200],
                "streamer_id": [7, 7, 8],
                "start_ts": [0, 1000, 1000],
                "end_ts": [900, 5000, 5000],
            }
        ),  # fmt: skip
        showcase=pd.DataFrame(
            {
                "session_id": [50, 100, 100, 200],
                "product_id": [10, 11, 10, 12],
                "start_ts": [0, 1000, 1500, 1000],
                "end_ts": [900, 1500, 5000, 5000],
            }
        ),  # fmt: skip
        events=_events(events),
    )


PAST = [
    (100, 1, "enter", 50, 7, None, None),
    (200, 1, "purchase", 50, 7, 10, None),
    (300, 1, "purchase", 50, 7, 10, None),
    (800, 1, "leave", 50, 7, None, 700.0),
]
QUERIES = pd.DataFrame({"user_id": [1, 1, 1, 2], "ts": 2000, "product_id": [10, 11, 12, 10],
                        "streamer_id": [7, 7, 8, 7],
                        "session_id": [100, 100, 200, 100]})  # fmt: skip


def test_kol_feature_fires_exactly_when_a_trusted_streamer_presents_now():
    f = CandidateFeaturizer(_hand_tables(PAST)).transform(QUERIES).frame()
    # Trust of user 1 in streamer 7: a visit 0.5 + two purchases 2 x 2 + a long visit 1 = 5.5.
    np.testing.assert_allclose(f["streamer_trust"], [5.5, 5.5, 0.0, 0.0])
    assert f["trusted_streamer"].tolist() == [1, 1, 0, 0]
    assert f["on_show"].tolist() == [1, 0, 1, 1]
    assert f["kol_presenting_now"].tolist() == [1, 0, 0, 0]
    assert f["live_now"].tolist() == [1, 1, 1, 1]
    # The same behaviour at or after the request time does not count yet.
    later = [(t + 1900, *rest) for t, *rest in PAST]  # the enter lands exactly at 2000
    g = CandidateFeaturizer(_hand_tables(later)).transform(QUERIES).frame()
    assert g["kol_presenting_now"].tolist() == [0, 0, 0, 0]
    assert g["streamer_trust"].tolist() == [0, 0, 0, 0]
    earlier = [(t + 1899, *rest) for t, *rest in PAST]  # the enter at 1999 counts
    h = CandidateFeaturizer(_hand_tables(earlier)).transform(QUERIES).frame()
    assert h["streamer_trust"].tolist() == [0.5, 0.5, 0, 0]


def test_profile_price_coupon_and_popularity_features_by_hand():
    events = PAST + [(1900, 2, "enter", 100, 7, None, None), (1950, 2, "click", 100, 7, 10, None)]
    tables = _hand_tables(events)
    drops = pd.DataFrame({"session_id": [100], "product_id": [10], "start_ts": [1500],
                          "end_ts": [5000], "coupon_value": [20.0]})  # fmt: skip
    f = CandidateFeaturizer(tables, coupon_drops=drops).transform(QUERIES).frame()
    np.testing.assert_allclose(f["coupon_live"], [20.0, 0, 0, 20.0])
    np.testing.assert_allclose(f["coupon_live_depth"], [0.2, 0, 0, 0.2], rtol=1e-6)
    np.testing.assert_allclose(f["log_price"], np.log([100, 50, 20, 100]), rtol=1e-6)
    # User 1 bought product 10 (price 100) twice: usual log price log(100).
    np.testing.assert_allclose(f["log_price_vs_profile"][:3], np.log([1.0, 0.5, 0.2]), atol=1e-6)
    np.testing.assert_allclose(f["price_fit"][0], 1.0)
    np.testing.assert_allclose(f["profile_category_share"], [1.0, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(f["room_entries_recent"], np.log1p([1, 1, 0, 1]), rtol=1e-6)
    np.testing.assert_allclose(f["product_clicks_recent"], np.log1p([1, 0, 0, 1]), rtol=1e-6)
    assert f["has_retrieval_score"].eq(0).all() and f["retrieval_score"].eq(0).all()
    scored = CandidateFeaturizer(tables).transform(
        QUERIES.assign(retrieval_score=[0.5, np.nan, 1, 2])
    )
    np.testing.assert_allclose(scored.column("retrieval_score"), [0.5, 0, 1, 2])
    np.testing.assert_allclose(scored.column("has_retrieval_score"), [1, 0, 1, 1])


def test_unknown_product_is_a_clear_error():
    with pytest.raises(ValueError, match="product_id 99 is not in table 'products'"):
        CandidateFeaturizer(_hand_tables(PAST)).transform(QUERIES.assign(product_id=99))


# ---------------------------------------------------------------- point in time on a world


def test_features_ignore_events_at_or_after_the_request_time(world):
    tables, _ = world
    ts = int(tables.live_sessions["start_ts"].quantile(0.5)) + 1800
    users = tables.events["user_id"].drop_duplicates().sample(25, random_state=0)
    requests = pd.DataFrame({"request_id": np.arange(25), "user_id": users.to_numpy(), "ts": ts})
    pairs = live_candidates(tables.live_sessions, tables.showcase, requests)
    pairs = pairs.merge(requests, on="request_id")
    assert len(pairs) > 100
    before = CandidateFeaturizer(tables).transform(pairs)
    ev = tables.events
    future = ev.loc[ev["ts"] >= ts].copy()
    # Rewrite the future: the query users do everything that happens from ts on, at ts.
    future["user_id"] = np.resize(users.to_numpy(), len(future))
    future["ts"] = np.where(np.arange(len(future)) % 2 == 0, ts, future["ts"])
    changed = replace(tables, events=pd.concat([ev.loc[ev["ts"] < ts], future], ignore_index=True))
    after = CandidateFeaturizer(changed).transform(pairs)
    np.testing.assert_array_equal(before.values, after.values)
    assert before.values.dtype == np.float32 and before.names == FEATURE_NAMES
    # Moving the same events one second earlier does change features.
    early = changed.events.copy()
    early.loc[early["ts"] == ts, "ts"] = ts - 1
    moved = CandidateFeaturizer(replace(changed, events=early))
    assert not np.array_equal(before.values, moved.transform(pairs).values)


def test_session_block_from_a_live_store_equals_the_replayed_one(world):
    from recsys.ranking import Candidates, ItemLookup, SessionStore, event_columns

    tables, _ = world
    ts = int(tables.live_sessions["start_ts"].quantile(0.5)) + 1800
    user = int(tables.events.loc[tables.events["ts"] < ts, "user_id"].iloc[-1])
    requests = pd.DataFrame({"request_id": [0], "user_id": [user], "ts": [ts]})
    pairs = live_candidates(tables.live_sessions, tables.showcase, requests).merge(requests)
    featurizer = CandidateFeaturizer(tables)
    store = SessionStore(lookup=ItemLookup.from_tables(tables.products, tables.streamers))
    store.replay(event_columns(tables.events.loc[tables.events["ts"] < ts]))
    cands = Candidates.products(
        pairs["product_id"].to_numpy(), pairs["streamer_id"].to_numpy(),
        pairs["session_id"].to_numpy(),
    )  # fmt: skip
    online = featurizer.transform(pairs, session=store.features(user, cands, ts))
    np.testing.assert_allclose(online.values, featurizer.transform(pairs).values, atol=1e-5)
    with pytest.raises(ValueError, match="session features"):
        featurizer.transform(pairs, session=np.zeros((1, 3)))


# ---------------------------------------------------------------- pairs as arrays


def _one_viewer(tables: LiveCommerceTables) -> tuple[int, int, pd.DataFrame]:
    """(user, ts, that viewer's live candidate pairs with a retrieval score, some unknown)."""
    ts = int(tables.live_sessions["start_ts"].quantile(0.5)) + 1800
    user = int(tables.events.loc[tables.events["ts"] < ts, "user_id"].iloc[-1])
    requests = pd.DataFrame({"request_id": [0], "user_id": [user], "ts": [ts]})
    pairs = live_candidates(tables.live_sessions, tables.showcase, requests).merge(requests)
    score = np.where(np.arange(len(pairs)) % 3, np.linspace(-1.0, 2.0, len(pairs)), np.nan)
    return user, ts, pairs.assign(retrieval_score=score)


def test_pairs_from_a_frame_give_the_frame_features_exactly(world):
    tables, _ = world
    ts = int(tables.live_sessions["start_ts"].quantile(0.5)) + 1800
    users = tables.events["user_id"].drop_duplicates().sample(10, random_state=1)
    requests = pd.DataFrame({"request_id": np.arange(10), "user_id": users.to_numpy(), "ts": ts})
    frame = live_candidates(tables.live_sessions, tables.showcase, requests).merge(requests)
    frame["streamer_id"] = frame["streamer_id"].astype("Int64")
    frame.loc[::4, "streamer_id"] = pd.NA  # a missing id counts as unknown on both paths
    frame["sequential_score"] = np.where(np.arange(len(frame)) % 2, 0.25, np.nan)
    frame.index = frame.index * 2 + 5  # rows are positional, whatever the index
    assert len(frame) > 100
    featurizer = CandidateFeaturizer(tables)
    pairs = Pairs.from_frame(frame)
    assert len(pairs) == len(frame) and pairs.retrieval_score is None
    assert pairs.streamer_id[0] == -1 and pairs.streamer_id.dtype == np.int64
    expected = featurizer.transform(frame)
    np.testing.assert_array_equal(featurizer.transform(pairs).values, expected.values)
    has = np.arange(len(frame)) % 2
    np.testing.assert_array_equal(expected.column("has_sequential_score"), has)
    with pytest.raises(ValueError, match=r"candidate pairs: missing columns \['ts'\]"):
        Pairs.from_frame(frame.drop(columns="ts"))


def test_pairs_of_one_request_equal_the_frame_form(world):
    tables, _ = world
    user, ts, frame = _one_viewer(tables)
    ids = [frame[c].to_numpy() for c in ("product_id", "streamer_id", "session_id")]
    pairs = Pairs.of_request(user, ts, *ids, retrieval_score=frame["retrieval_score"].to_numpy())
    assert pairs.user_id.tolist() == [user] * len(frame) and set(pairs.ts.tolist()) == {ts}
    columns = ["user_id", "ts", "product_id", "streamer_id", "session_id", "retrieval_score"]
    pd.testing.assert_frame_equal(pairs.frame(), frame[columns])
    featurizer = CandidateFeaturizer(tables)
    session = np.linspace(0, 1, len(frame) * 17).reshape(len(frame), 17)  # (n, 17)
    np.testing.assert_array_equal(
        featurizer.transform(pairs, session=session).values,
        featurizer.transform(frame, session=session).values,
    )
    np.testing.assert_array_equal(
        featurizer.transform(pairs).values, featurizer.transform(frame).values
    )
    with pytest.raises(ValueError, match=r"retrieval_score has shape \(2,\)"):
        Pairs.of_request(user, ts, *ids, retrieval_score=np.zeros(2))


def test_unknown_product_in_request_pairs_names_its_row():
    featurizer = CandidateFeaturizer(_hand_tables(PAST))
    pairs = Pairs.of_request(1, 2000, [10, 11, 99], [7, 7, 7], [100, 100, 100])
    with pytest.raises(ValueError, match="row 2: product_id 99 is not in table 'products'"):
        featurizer.transform(pairs, session=np.zeros((3, 17)))
    known = featurizer.transform(Pairs.of_request(1, 2000, [10], [7], [100]))
    assert known.values.shape == (1, len(FEATURE_NAMES))


def test_id_index_finds_exactly_what_a_pandas_index_finds():
    rng = np.random.default_rng(0)
    ids = rng.integers(-(2**62), 2**62, 1000)
    queries = np.concatenate([rng.choice(ids, 300), rng.integers(0, 2**62, 50), [-1]])
    index = IdIndex(ids, table="t", field="id")
    np.testing.assert_array_equal(index.positions(queries), pd.Index(ids).get_indexer(queries))
    assert len(index) == 1000 and index.positions(queries).dtype == np.int64
    one = np.full(7, ids[42])
    assert index.positions_of_one(one).tolist() == [42] * 7
    assert index.positions_of_one(np.array([ids[3], 5])).tolist() == [3, -1]
    assert index.positions_of_one(np.array([], dtype=np.int64)).tolist() == []
    with pytest.raises(ValueError, match="table 'products': field 'product_id' repeats id 7"):
        IdIndex(np.array([5, 7, 9, 7]), table="products", field="product_id")


# ---------------------------------------------------------------- ESMM


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_esmm_loss_matches_a_hand_computation():
    a, b = [0.3, -1.2, 2.0], [-0.5, 0.8, 1.5]
    click, conv = [1, 0, 1], [1, 0, 0]
    ctr = ctcvr = 0.0
    for ai, bi, y, z in zip(a, b, click, conv, strict=True):
        p, q = _sigmoid(ai), _sigmoid(ai) * _sigmoid(bi)
        ctr -= (y * math.log(p) + (1 - y) * math.log(1 - p)) / 3
        ctcvr -= (y * z * math.log(q) + (1 - y * z) * math.log(1 - q)) / 3
    loss, parts = esmm_loss(*(torch.tensor(v, dtype=torch.float64) for v in (a, b, click, conv)),
                            ctcvr_weight=0.5)  # fmt: skip
    np.testing.assert_allclose(parts["ctr"].item(), ctr, rtol=1e-6)
    np.testing.assert_allclose(parts["ctcvr"].item(), ctcvr, rtol=1e-6)
    np.testing.assert_allclose(loss.item(), ctr + 0.5 * ctcvr, rtol=1e-6)
    big = torch.tensor([60.0, -60.0])
    loss, _ = esmm_loss(big, big, torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0]))
    assert torch.isfinite(loss) and loss.item() > 50  # confidently wrong, but finite


def test_impression_dataset_epochs_are_seeded_and_resumable():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    data = ImpressionDataset(x, np.ones(10), np.zeros(10))
    first = [b.features[:, 0].tolist() for b in data.epoch(batch_size=4, seed=1, epoch=0)]
    again = [b.features[:, 0].tolist() for b in data.epoch(batch_size=4, seed=1, epoch=0)]
    later = [b.features[:, 0].tolist() for b in data.epoch(batch_size=4, seed=1, epoch=1)]
    resumed = [
        b.features[:, 0].tolist() for b in data.epoch(batch_size=4, seed=1, epoch=0, start_step=2)
    ]
    assert first == again and first != later and resumed == first[2:]
    assert sorted(sum(first, [])) == list(range(0, 20, 2)) and data.n_batches(4) == 3
    with pytest.raises(ValueError, match="row 0: a conversion without a click"):
        ImpressionDataset(x, np.zeros(10), np.ones(10))
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75


@pytest.fixture(scope="module")
def tiny_impressions(world):
    tables, truth = world
    log = impression_log(truth, tables, n_requests=None, seed=0)
    features = CandidateFeaturizer(tables).transform(log.impressions)
    cut = np.quantile(log.impressions["ts"], 0.7)
    early = log.impressions["ts"].to_numpy() < cut
    return log, features, early


def test_esmm_learns_clicks_from_tiny_impressions(tiny_impressions):
    log, features, early = tiny_impressions
    imp = log.impressions

    def data(rows):
        return ImpressionDataset(features.values[rows], imp["click"].to_numpy()[rows],
                                 imp["conversion"].to_numpy()[rows])  # fmt: skip

    trainer = TrainerConfig(max_epochs=4, batch_size=256, lr=3e-3, checkpoint=False,
                            progress=False, monitor="esmm_auc", seed=0)  # fmt: skip
    model, fit = fit_esmm(data(early), hidden=(32,), trainer=trainer)
    assert fit.epochs == 4
    held_out = esmm_metrics(model, data(~early))  # later impressions than any trained on
    assert held_out["click_auc"] > 0.7, held_out  # a constant predictor scores 0.5
    p = model.predict(features.values[~early])
    assert np.all(p["pctcvr"] <= p["pctr"]) and np.allclose(p["pctcvr"], p["pctr"] * p["pcvr"])
    loss, parts = ESMMTask()(model, next(data(early).epoch(batch_size=8, seed=0, epoch=0)))
    assert torch.isfinite(loss) and set(parts) == {"ctr", "ctcvr"}


def test_esmm_settings_read_the_config():
    s = esmm_settings()
    assert s["objective"] in ("ctcvr", "ctr", "gmv") and s["trainer"].monitor == "esmm_auc"
    assert len(s["hidden"]) >= 1


# ---------------------------------------------------------------- ranker and reasons


def _frame(requests: list[int], products: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    req = pd.DataFrame({"request_id": sorted(set(requests)), "user_id": 5, "ts": 100})
    cand = pd.DataFrame({"request_id": requests, "product_id": products, "streamer_id": 1,
                         "session_id": 2})  # fmt: skip
    return req, cand


def test_blend_ranker_orders_by_the_weighted_sum():
    req, cand = _frame([0, 0, 0, 0, 1, 1], [4, 3, 2, 1, 9, 8])
    x = np.array([[1, 0], [0, 1], [1, 1], [0.5, 0.5], [0, 0], [0, 2]], dtype=np.float32)
    features = FeatureMatrix(("a", "b"), x)
    ranker = Ranker.blended(BlendWeights((("a", 2.0), ("b", 1.0))), reasons=ReasonRules(()), k=3)
    top = ranker.rank(req, cand, features)
    # Scores: request 0 -> 2, 1, 3, 1.5 (products 4, 3, 2, 1); request 1 -> 0, 2.
    assert top["product_id"].tolist() == [2, 4, 1, 8, 9]
    assert top["position"].tolist() == [0, 1, 2, 0, 1]
    np.testing.assert_allclose(top["score"], [3, 2, 1.5, 2, 0])
    tied = Ranker.blended(BlendWeights((("a", 1.0), ("b", 1.0))), reasons=ReasonRules(()))
    assert tied.rank(req, cand, features)["product_id"].tolist()[:4] == [2, 1, 3, 4]
    with pytest.raises(ValueError, match="unknown features"):
        Ranker.blended(BlendWeights((("zzz", 1.0),))).rank(req, cand, features)
    with pytest.raises(ValueError, match="2 feature rows"):
        ranker.rank(req, cand, features.take([0, 1]))


def test_reasons_fire_when_features_cross_thresholds():
    rules = ReasonRules.from_yaml()
    assert {r.code for r in rules.rules} <= set(REASON_CODES) and rules.max_reasons == 3
    values = np.zeros((4, len(FEATURE_NAMES)), dtype=np.float32)
    features = FeatureMatrix(FEATURE_NAMES, values)
    col = FEATURE_NAMES.index
    values[0, col("kol_presenting_now")] = 1
    values[1, col("category_share")] = 0.25  # exactly the threshold
    values[1, col("price_fit")], values[1, col("has_price_history")] = 0.9, 1
    values[2, col("category_share")] = 0.24  # just below
    values[2, col("followed_streamer")] = 1  # followed, but the rule also needs live_now
    values[3] = 1.0  # everything fires; only the first three in config order are kept
    codes = rules.codes(features)
    assert codes[0] == ("trusted_streamer_presenting_now",)
    assert codes[1] == ("matches_current_category", "price_fits")
    assert codes[2] == ()
    assert codes[3] == ("trusted_streamer_presenting_now", "in_cart", "coupon_available")
    assert rules.text("price_fits")
    bad = ReasonRules.from_dict({"reasons": [{"code": "x", "text": "t", "when": {"nope": 1}}]})
    with pytest.raises(ValueError, match="unknown feature 'nope'"):
        bad.codes(features)


def test_ranked_items_carry_their_reasons():
    req, cand = _frame([0, 0], [1, 2])
    values = np.zeros((2, len(FEATURE_NAMES)), dtype=np.float32)
    values[1, FEATURE_NAMES.index("kol_presenting_now")] = 1
    top = Ranker.blended().rank(req, cand, FeatureMatrix(FEATURE_NAMES, values))
    assert top["product_id"].tolist() == [2, 1]
    assert top["reasons"].tolist() == [("trusted_streamer_presenting_now",), ()]


def test_learned_ranker_sorts_by_its_objective():
    torch.manual_seed(0)
    names = ("log_price", "x")
    model = ESMM(ESMMConfig(n_features=2, hidden=(8,)))
    req, cand = _frame([0] * 6, [1, 2, 3, 4, 5, 6])
    x = np.column_stack([np.log([10, 20, 30, 40, 50, 60]), np.linspace(-2, 2, 6)]).astype(
        np.float32
    )
    features = FeatureMatrix(names, x)
    p = model.predict(x)
    for objective, score in (("ctcvr", p["pctcvr"]), ("ctr", p["pctr"]),
                             ("gmv", p["pctcvr"] * np.exp(x[:, 0].astype(float)))):  # fmt: skip
        top = Ranker.learned(model, names, objective=objective, k=6, reasons=ReasonRules(()))
        ranked = top.rank(req, cand, features)
        expected = cand["product_id"].to_numpy()[np.argsort(-score, kind="stable")]
        assert ranked["product_id"].tolist() == expected.tolist()
        np.testing.assert_allclose(ranked["pctcvr"], ranked["pctr"] * ranked["pcvr"])
    with pytest.raises(ValueError, match="objective"):
        Ranker.learned(model, names, objective="clicks")


def test_request_flow_retrieves_live_items_and_ranks_them(world):
    tables, _ = world
    ts = int(tables.live_sessions["start_ts"].quantile(0.5)) + 600
    users = tables.events["user_id"].drop_duplicates().head(4).to_numpy()
    requests = pd.DataFrame({"request_id": [0, 1, 2, 3], "user_id": users, "ts": ts})
    live = live_candidates(tables.live_sessions, tables.showcase, requests)
    first = live.loc[live["request_id"] == 0, "product_id"].to_numpy()
    scores = pd.DataFrame({"request_id": 0, "product_id": first[:3], "retrieval_score": [1, 3, 2]})
    kept = retrieve_live(requests, live, scores, top_n=2)
    assert kept.loc[kept["request_id"] == 0, "product_id"].tolist() == sorted(first[[1, 2]])
    assert kept.groupby("request_id").size().max() == 2 and {"user_id", "ts"} <= set(kept.columns)
    top = rank_live(requests, live, CandidateFeaturizer(tables), Ranker.blended(k=5), scores)
    assert top.groupby("request_id").size().max() == 5
    assert top["request_id"].isin(requests["request_id"]).all() and "reasons" in top.columns
    with pytest.raises(ValueError, match="top_n needs a retrieval_score"):
        retrieve_live(requests, live, None, top_n=2)


def test_fit_esmm_is_reproducible_from_its_seed():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    click = (x[:, 0] + rng.normal(size=300) > 1).astype(float)
    data = ImpressionDataset(x, click, click * (x[:, 1] > 0))
    trainer = TrainerConfig(max_epochs=2, batch_size=64, checkpoint=False, progress=False)
    torch.manual_seed(1)
    first, _ = fit_esmm(data, hidden=(8,), trainer=trainer)
    torch.manual_seed(2)  # the process's generator state must not matter
    second, _ = fit_esmm(data, hidden=(8,), trainer=trainer)
    for name, value in first.state_dict().items():
        torch.testing.assert_close(value, second.state_dict()[name], rtol=0, atol=0)
