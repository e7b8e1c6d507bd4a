"""The recommendation service (recsys.serving) over a tiny simulated world, via TestClient."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recsys.data.validation.online import OnlineEventChecker
from recsys.ranking import SessionEvent
from recsys.serving import (
    DecayedPopularity,
    FixedClock,
    PopularityLiveService,
    Recommendation,
    RecommenderService,
    create_app,
)

UNKNOWN_USER = 12345  # pseudonyms are 63-bit hashes: this small id is in no users table


@pytest.fixture(scope="module")
def busy_now(tiny_world) -> int:
    """Half an hour into the session start with the most rooms on air."""
    s = tiny_world.live_sessions
    times = s["start_ts"].to_numpy() + 1800
    live = [((s["start_ts"] <= t) & (t <= s["end_ts"])).sum() for t in times]
    return int(times[int(np.argmax(live))])


@pytest.fixture()
def client(tiny_world, busy_now):
    service = PopularityLiveService.from_tables(tiny_world, until=busy_now)
    checker = OnlineEventChecker.from_tables(tiny_world)
    return TestClient(create_app(service, clock=FixedClock(busy_now), checker=checker))


def live_truth(tables, now: int) -> tuple[set[int], set[int]]:
    """Streamers on air and products on a live shelf at ``now``, straight from the tables."""
    s = tables.live_sessions
    on_air = s.loc[(s["start_ts"] <= now) & (now <= s["end_ts"])]
    shelf = tables.showcase.loc[tables.showcase["session_id"].isin(on_air["session_id"])]
    return set(on_air["streamer_id"].tolist()), set(shelf["product_id"].tolist())


def recommend(client, user, **params):
    response = client.get("/recommend", params={"user": user, **params})
    assert response.status_code == 200, response.text
    body = response.json()
    rooms = [i for i in body["items"] if i["kind"] == "room"]
    return body, rooms, [i for i in body["items"] if i["kind"] == "product"]


def test_healthz(client, busy_now):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["now"] == busy_now
    assert body["live_rooms"] >= 3 and body["known_users"] == 700


def test_recommends_only_what_is_live(client, tiny_world, busy_now):
    user = int(tiny_world.users["user_id"].iloc[0])
    body, rooms, products = recommend(client, user, k=5)
    live_rooms, live_products = live_truth(tiny_world, busy_now)
    assert body["cold_start"] is False and body["now"] == busy_now and body["k"] == 5
    assert 0 < len(rooms) <= 5 and len(products) == 5
    assert {r["id"] for r in rooms} <= live_rooms
    assert {p["id"] for p in products} <= live_products
    assert len({p["id"] for p in products}) == len(products)  # one shelf per product
    for items in (rooms, products):
        scores = [i["score"] for i in items]
        assert scores == sorted(scores, reverse=True)
        assert all(i["reasons"] for i in items)
    assert all(p["streamer_id"] in live_rooms for p in products)
    _, rooms_only, none = recommend(client, user, k=100, kind="room")
    assert {r["id"] for r in rooms_only} == live_rooms and none == []


def test_nothing_live_means_nothing_recommended(client, tiny_world):
    before_everything = int(tiny_world.live_sessions["start_ts"].min()) - 1
    body, _, _ = recommend(client, UNKNOWN_USER, now=before_everything)
    assert body["items"] == [] and body["now"] == before_everything


def test_unknown_user_gets_a_cold_start_ranking(client):
    body, rooms, products = recommend(client, UNKNOWN_USER, k=3)
    assert body["cold_start"] is True and rooms and len(products) == 3


def test_viewers_without_a_session_share_one_ranking_until_events_arrive(tiny_world, busy_now):
    from recsys.ranking.events import SessionEvent

    service = PopularityLiveService.from_tables(tiny_world, until=busy_now)
    first = service.recommend(UNKNOWN_USER, busy_now, 5, ("product",))
    again = service.recommend(UNKNOWN_USER + 1, busy_now, 5, ("product",))
    assert [i.id for i in first.items] == [i.id for i in again.items]
    last = first.items[-1]
    clicks = [
        SessionEvent(ts=busy_now - 1, user=10**9 + j, event_type="click", session=last.session,
                     streamer=last.streamer, product=last.id)
        for j in range(50)
    ]  # fmt: skip
    service.ingest(clicks)
    after = service.recommend(UNKNOWN_USER, busy_now, 5, ("product",))
    assert after.items[0].id == last.id  # the new popularity reached the shared ranking


def test_session_events_move_recommendations(client, tiny_world, busy_now):
    _, rooms, products = recommend(client, UNKNOWN_USER, k=100)
    picked = rooms[len(rooms) // 2]  # a middling live room
    assert picked != rooms[0]
    category = tiny_world.streamers.set_index("streamer_id").loc[picked["id"], "category"]
    room = {"session_id": picked["session_id"], "streamer_id": picked["id"]}
    events = [
        {"ts": busy_now - 120, "user_id": UNKNOWN_USER, "event_type": "enter", **room},
        {"ts": busy_now - 60, "user_id": UNKNOWN_USER, "event_type": "like", **room},
        {"ts": busy_now - 30, "user_id": UNKNOWN_USER, "event_type": "comment", "comment": "hi"}
        | room,
    ]
    response = client.post("/events", json={"events": events})
    assert response.status_code == 200 and response.json() == {"accepted": 3, "rejected": []}
    _, rooms_after, products_after = recommend(client, UNKNOWN_USER, k=100)
    top = rooms_after[0]
    assert top["id"] == picked["id"] and top["score"] > picked["score"] + 2
    assert f"matches your recent interest in {category}" in top["reasons"]
    assert "you are watching this room" in top["reasons"]
    # Products on that room's shelf now lead the product ranking.
    in_room = [p for p in products_after if p["session_id"] == picked["session_id"]]
    assert in_room and products_after[0]["session_id"] == picked["session_id"]
    assert "in the room you watch" in products_after[0]["reasons"]
    assert products != products_after


@pytest.mark.parametrize(
    "params, field",
    [
        ({"user": 1, "k": 0}, "query.k"),
        ({"user": 1, "k": 1000}, "query.k"),
        ({"user": 1, "k": "ten"}, "query.k"),
        ({"user": "abc"}, "query.user"),
        ({"user": "1.5"}, "query.user"),
        ({"user": -3}, "query.user"),
        ({"user": 2**63}, "query.user"),
        ({"k": 3}, "query.user"),
        ({"user": 1, "kind": "shop"}, "query.kind"),
    ],
)
def test_bad_recommend_queries_get_422(client, params, field):
    response = client.get("/recommend", params=params)
    assert response.status_code == 422
    assert any(m.startswith(field) for m in response.json()["messages"]), response.json()


def _event(**fields):
    return {"ts": 100, "user_id": 1, "event_type": "click", "product_id": 3} | fields


@pytest.mark.parametrize(
    "events, message",
    [
        ([_event(event_type="wave")], "body.events.0.event_type: Input should be 'enter'"),
        ([_event(product_id=None)], "requires field(s) ['product_id']"),
        ([_event(event_type="leave", product_id=None)], "['session_id', 'streamer_id', 'dwell_s']"),
        ([_event(ts="100")], "body.events.0.ts: Input should be a valid integer"),
        ([_event(product_id=True)], "body.events.0.product_id: Input should be a valid integer"),
        ([_event(product_id=-1)], "body.events.0.product_id: Input should be greater than"),
        ([_event(user_id=2**63)], "body.events.0.user_id: Input should be less than"),
        ([_event(colour="red")], "body.events.0.colour: Extra inputs are not permitted"),
        ([_event(), _event(amount=-5.0)], "body.events.1.amount: Input should be greater"),
        ([], "body.events: List should have at least 1 item"),
    ],
)
def test_bad_events_get_422_naming_the_field(client, events, message):
    response = client.post("/events", json={"events": events})
    assert response.status_code == 422
    assert any(message in m for m in response.json()["messages"]), response.json()


def test_malformed_json_gets_400(client):
    response = client.post(
        "/events", content=b'{"events": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"] == "malformed JSON"
    assert client.post("/events", json=[_event()]).status_code == 422  # a list, not an object


class Broken(RecommenderService):
    def recommend(self, user, now, k, kinds=("room", "product")) -> Recommendation:
        raise RuntimeError("model exploded")

    def ingest(self, events) -> int:
        raise KeyError("store gone")


def test_internal_errors_are_500_json_and_the_service_survives():
    client = TestClient(create_app(Broken(), clock=FixedClock(5)), raise_server_exceptions=False)
    for response in (
        client.get("/recommend", params={"user": 1}),
        client.post("/events", json={"events": [_event()]}),
    ):
        assert response.status_code == 500
        assert response.json()["error"] == "internal error"
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["now"] == 5


class Recording(RecommenderService):
    """Counts how many calls run at once, and on which threads."""

    def __init__(self) -> None:
        self.running = self.most = 0
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def _enter(self) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.current_thread().name)
        time.sleep(0.01)  # long enough for concurrent requests to overlap
        with self.lock:
            self.running -= 1

    def recommend(self, user, now, k, kinds=("room", "product")) -> Recommendation:
        self._enter()
        return Recommendation(user, now, False, [])

    def ingest(self, events) -> int:
        self._enter()
        return len(events)


def test_requests_run_one_at_a_time_on_one_worker_thread():
    service, started = Recording(), []
    app = create_app(
        service,
        clock=FixedClock(5),
        worker_init=lambda: started.append(threading.current_thread().name),
    )
    with TestClient(app) as client, ThreadPoolExecutor(max_workers=8) as pool:
        calls = [pool.submit(client.get, "/recommend", params={"user": i}) for i in range(12)] + [
            pool.submit(client.post, "/events", json={"events": [_event()]}) for _ in range(4)
        ]
        assert all(c.result().status_code == 200 for c in calls)
    assert service.most == 1
    assert len(service.threads) == 1 and service.threads == set(started)


def test_bulk_popularity_equals_event_by_event(tiny_world):
    events = tiny_world.events.iloc[:3000]
    bulk = DecayedPopularity.from_events(events, half_life_s=3600.0)
    online = DecayedPopularity(half_life_s=3600.0)
    for record in events.sort_values(["ts", "event_id"]).to_dict("records"):
        online.add(SessionEvent.from_record(record))
    now = int(events["ts"].max()) + 600
    streamers = tiny_world.streamers["streamer_id"].to_numpy()
    products = tiny_world.products["product_id"].to_numpy()
    for kind, ids in (("room", streamers), ("product", products)):
        np.testing.assert_allclose(online.values(kind, ids, now), bulk.values(kind, ids, now))
    assert bulk.values("room", streamers, now).sum() > 0


def test_serve_config_builds_a_working_app(tiny_world_dir, tiny_world):
    from hydra import compose, initialize_config_module

    from recsys.cli.serve import build_app

    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        cfg = compose(config_name="serve", overrides=[f"world.data_dir={tiny_world_dir}"])
        bad = compose(config_name="serve", overrides=["checkpoint=model.pt"])
    client = TestClient(build_app(cfg))
    body = client.get("/healthz").json()
    last = tiny_world.live_sessions.iloc[int(tiny_world.live_sessions["start_ts"].argmax())]
    middle = (int(last["start_ts"]) + int(last["end_ts"])) // 2
    assert body["status"] == "ok" and middle <= body["now"] < middle + 60
    user = int(tiny_world.users["user_id"].iloc[1])
    body, rooms, _ = recommend(client, user)
    assert int(last["streamer_id"]) in {r["id"] for r in rooms}
    with pytest.raises(FileNotFoundError, match="no checkpoint at model.pt"):
        build_app(bad)


def test_unknown_viewers_are_taken_unknown_products_are_not(client, busy_now):
    events = [
        _event(ts=busy_now - 5, product_id=10**12),
        _event(event_type="coupon_claim", product_id=None, coupon_value=5.0, ts=busy_now - 4),
    ]
    assert client.post("/events", json={"events": events}).json() == {
        "accepted": 1,
        "rejected": [{"index": 0, "reason": "product_id: unknown product 1000000000000"}],
    }
    body, _, products = recommend(client, 1, k=3)
    assert body["cold_start"] is True
    assert all("you hold a 5 coupon for it" in p["reasons"] for p in products)


def test_service_rejects_bad_arguments_directly(tiny_world, busy_now):
    service = PopularityLiveService.from_tables(tiny_world, until=busy_now)
    with pytest.raises(ValueError, match="kinds must be among"):
        service.recommend(1, busy_now, 3, kinds=("shop",))
