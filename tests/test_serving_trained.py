"""The trained pipeline behind the service: checkpoint + index + ranker, request by request."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recsys.cli.index import build_indexes
from recsys.cli.serve import build_app
from recsys.serving import FixedClock, create_app
from recsys.serving.loading import load_trained_service
from recsys.serving.trained import FlowConfig, top_products
from tests.conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def served(trained_two_tower):
    ckpt, cache = trained_two_tower
    build_indexes(compose_config("index", [f"checkpoint={ckpt}", f"cache_dir={cache}"]))
    picked = {}

    def middle_of_last_session(tables) -> int:
        last = tables.live_sessions.loc[tables.live_sessions["start_ts"].idxmax()]
        picked["now"], picked["tables"] = (int(last["start_ts"]) + int(last["end_ts"])) // 2, tables
        return picked["now"]

    service = load_trained_service(
        ckpt, until=middle_of_last_session, cache_dir=str(cache), flow=FlowConfig(n_candidates=30)
    )
    return service, picked["now"], picked["tables"]


def _active_user(tables, now: int) -> int:
    ev = tables.events
    return int(ev.loc[ev["ts"] < now, "user_id"].value_counts().index[0])


def test_known_viewer_gets_live_products_ranked_with_reasons(served):
    service, now, tables = served
    user = _active_user(tables, now)
    rec = service.recommend(user, now, k=8)
    assert not rec.cold_start
    live = service.catalog.products(now)
    shelves = set(zip(live.product.tolist(), live.session.tolist(), strict=True))
    products = [i for i in rec.items if i.kind == "product"]
    rooms = [i for i in rec.items if i.kind == "room"]
    assert 0 < len(products) <= 8 and 0 < len(rooms) <= 8
    assert all((i.id, i.session) in shelves for i in products)
    assert len({i.id for i in products}) == len(products)  # a product once, from its best shelf
    assert set(i.id for i in rooms) <= set(service.catalog.rooms(now).streamer.tolist())
    assert [i.score for i in products] == sorted((i.score for i in products), reverse=True)
    assert all(isinstance(r, str) for i in rec.items for r in i.reasons)


def test_retrieval_returns_the_exact_live_top_of_the_two_tower(served):
    service, now, tables = served
    user = _active_user(tables, now)
    code = int(service.vocabs["user"].encode(np.array([user]))[0])
    ids, scores = service.retrieve(
        service.product_scorer.request_batch(np.array([code]), np.array([now])), now
    )
    live = service.retriever.live_at(now)
    assert set(ids.tolist()) <= set(live.tolist())
    # A Flat index: the retrieved scores are the model's own scores of those products.
    codes = service.vocabs["product"].encode(ids)
    expected = service.product_scorer.request_scores(np.array([code]), np.array([now]), codes)[0]
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
    everything = service.product_scorer.request_scores(
        np.array([code]), np.array([now]), service.vocabs["product"].encode(live)
    )[0]
    assert scores[0] == pytest.approx(everything.max(), abs=1e-4)


def test_unknown_viewer_falls_back_to_the_cold_start_ranking(served):
    service, now, _ = served
    rec = service.recommend(987_654_321, now, k=5)
    assert rec.cold_start and rec.items


def test_ingested_events_move_the_session_features(served):
    from recsys.ranking.events import SessionEvent

    service, now, tables = served
    user = _active_user(tables, now)
    room = int(service.catalog.rooms(now).streamer[0])
    session = int(service.catalog.rooms(now).session[0])
    service.ingest([SessionEvent(ts=now - 5, user=user, event_type="enter", session=session,
                                 streamer=room)])  # fmt: skip
    rooms = [i for i in service.recommend(user, now, k=20, kinds=("room",)).items]
    watched = next(i for i in rooms if i.id == room)
    assert "you are watching this room" in watched.reasons


def test_http_service_serves_the_trained_pipeline(served):
    service, now, tables = served
    client = TestClient(create_app(service, clock=FixedClock(now)))
    health = client.get("/healthz").json()
    assert health["recommender"].startswith("two-tower") and health["index_size"] > 0
    body = client.get("/recommend", params={"user": _active_user(tables, now), "k": 5}).json()
    assert body["items"] and not body["cold_start"]
    assert client.get("/recommend", params={"user": "x"}).status_code == 422


def test_serve_config_loads_a_checkpoint(trained_two_tower):
    ckpt, cache = trained_two_tower
    cfg = compose_config(
        "serve", [f"checkpoint={ckpt}", f"world.cache_dir={cache}", "n_candidates=20"]
    )
    app = build_app(cfg)
    assert TestClient(app).get("/healthz").json()["n_candidates"] == 20
    with pytest.raises(ValueError, match="needs checkpoint"):
        build_app(compose_config("serve", ["ranker_checkpoint=some/ranker.pt"]))


def test_viewers_outside_a_session_are_ranked_by_the_outside_session_ranker(served):
    from recsys.ranking import BlendWeights, Ranker
    from recsys.ranking.events import SessionEvent
    from recsys.serving.trained import TrainedLiveService

    service, now, tables = served
    by_price = Ranker.blended(BlendWeights((("log_price", 1.0),)))
    by_retrieval = Ranker.blended(BlendWeights((("retrieval_score", 1.0),)))
    parts = dict(model=service.product_scorer, vocabs=service.vocabs, products=service.retriever,
                 catalog=service.catalog, featurizer=service.featurizer,
                 fallback=service.fallback, config=service.config)  # fmt: skip
    split = TrainedLiveService(ranker=by_price, outside_session=by_retrieval, **parts)
    user = int(tables.users["user_id"].iloc[-1])
    assert service.sessions.peek(user, now) is None
    outside = split.recommend(user, now, 5, ("product",)).items
    code = int(service.vocabs["user"].encode(np.array([user]))[0])
    ids, _ = service.retrieve(
        service.product_scorer.request_batch(np.array([code]), np.array([now])), now
    )
    assert [i.id for i in outside] == ids[:5].tolist()  # the two-tower's own order
    rooms = service.catalog.rooms(now)
    room, session = int(rooms.streamer[0]), int(rooms.session[0])
    enter = SessionEvent(ts=now - 30, user=user, event_type="enter", session=session, streamer=room)
    split.ingest([enter])
    inside = split.recommend(user, now, 5, ("product",)).items
    assert [i.score for i in inside] == sorted((i.score for i in inside), reverse=True)
    prices = np.log(tables.products.set_index("product_id").loc[[i.id for i in inside], "price"])
    np.testing.assert_allclose([i.score for i in inside], prices.to_numpy(), rtol=1e-5)


@pytest.mark.parametrize("k", [1, 5, 40])
def test_top_products_offers_each_product_once_from_its_best_shelf(k):
    rng = np.random.default_rng(k)
    product = rng.integers(0, 25, 120)
    scores = rng.integers(0, 8, 120).astype(np.float64)  # many ties: the lower product id first
    ranked = sorted(range(120), key=lambda i: (-scores[i], product[i], i))
    expected, seen = [], set()
    for i in ranked:
        if product[i] not in seen:
            seen.add(product[i])
            expected.append(i)
    assert top_products(product, scores, k).tolist() == expected[:k]


def test_top_products_reads_past_a_head_of_one_product():
    product = np.array([7] * 30 + [3, 9, 1])
    scores = np.concatenate([np.full(30, 5.0), [1.0, 2.0, 2.0]])  # the best 12 rows: product 7
    assert top_products(product, scores, 3).tolist() == [0, 32, 31]


@pytest.mark.parametrize("ascending", [True, False])
def test_best_candidates_break_score_ties_by_the_lower_id(served, ascending):
    service, now, _ = served
    ids = np.sort(service.retriever.live_at(now))[:40]
    ids = ids if ascending else ids[::-1].copy()
    q = np.zeros(service.retriever.index.dim, dtype=np.float32)  # every score is its bonus
    bonus = np.arange(len(ids), dtype=np.float32) % 3  # ties among every third candidate
    got, scores = service.best_candidates(ids, q, bonus)
    order = np.lexsort((ids, -bonus))[: service.config.n_candidates]
    assert got.tolist() == ids[order].tolist() and scores.tolist() == bonus[order].tolist()
