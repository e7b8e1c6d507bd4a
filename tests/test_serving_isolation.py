"""Fuzz: what one viewer posts changes another viewer's recommendations only through the
documented shared signal (popularity of the rooms and products the events name), and by a
bounded amount per event.

Hypothesis draws batches of events about viewer A (valid and invalid: times far from the
clock, rooms and products of other sessions, unknown ids, every event type) and posts them to
the service; the service's checks decide what is taken. Viewer B, in a live session of their
own, must then keep their session state exactly, every item the accepted events do not name
must keep its score exactly, and a named item's score (log(1 + popularity) + B's boosts) may
move up by at most log(1 + the weight the events add) and down by at most the decay over the
service's future window per event.
"""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.data.schema import EVENT_REQUIREMENTS, EVENT_TYPES
from recsys.data.validation.online import EventWindow, OnlineEventChecker
from recsys.serving import FixedClock, PopularityLiveService, create_app
from recsys.serving.popularity import PRODUCT_WEIGHT, ROOM_WEIGHT

WINDOW = EventWindow(max_past_s=3600, max_future_s=60)
VIEWER_A, VIEWER_B = 4242, 4343  # not in the users table: both are cold-start viewers


@pytest.fixture(scope="module")
def world(tiny_world):
    s = tiny_world.live_sessions
    now = int(s["start_ts"].iloc[len(s) // 2]) + 900
    live = s.loc[(s["start_ts"] <= now) & (now <= s["end_ts"])]
    shelf = tiny_world.showcase.loc[tiny_world.showcase["session_id"].isin(live["session_id"])]
    return {
        "tables": tiny_world,
        "now": now,
        "sessions": list(zip(live["session_id"], live["streamer_id"], strict=True)),
        "shelf": list(zip(shelf["session_id"], shelf["product_id"], strict=True)),
        "products": tiny_world.products["product_id"].tolist()[:50],
        "checker": OnlineEventChecker.from_tables(tiny_world, window=WINDOW),
    }


@st.composite
def event_about_a(draw, world) -> dict:
    now = world["now"]
    kind = draw(st.sampled_from(EVENT_TYPES))
    ts = draw(st.one_of(st.integers(now - 2 * 3600, now + 300), st.integers(0, 2**40)))
    session, streamer = draw(st.sampled_from(world["sessions"]))
    shelf_session, product = draw(st.sampled_from(world["shelf"]))
    event = {"ts": ts, "user_id": VIEWER_A, "event_type": kind}
    optional = {
        "session_id": draw(st.sampled_from([session, shelf_session, 10**9])),
        "streamer_id": draw(st.sampled_from([streamer, streamer + 1, 10**9])),
        "product_id": draw(st.sampled_from([product, *world["products"][:5], 10**9])),
        "dwell_s": draw(st.floats(0, 3600)),
        "amount": draw(st.floats(0, 1e4)),
        "coupon_value": draw(st.floats(0, 50)),
        "comment": draw(st.text(max_size=20)),
    }
    for field, value in optional.items():
        if field in EVENT_REQUIREMENTS[kind] or draw(st.booleans()):
            event[field] = value
    return event


def scores(service, user: int, now: int) -> dict[tuple[str, int], float]:
    """Every live room's and product's score for ``user`` (one best shelf per product)."""
    answer = service.recommend(user, now, 10**6)
    return {(i.kind, i.id): i.score for i in answer.items}


def setup(world):
    now = world["now"]
    service = PopularityLiveService.from_tables(world["tables"], until=now)
    app = create_app(service, clock=FixedClock(now), checker=world["checker"])
    session, streamer = world["sessions"][0]
    room = {"session_id": session, "streamer_id": streamer}
    b_events = [
        {"ts": now - 300, "user_id": VIEWER_B, "event_type": "enter", **room},
        {"ts": now - 200, "user_id": VIEWER_B, "event_type": "like", **room},
    ]
    client = TestClient(app)
    assert client.post("/events", json={"events": b_events}).json()["accepted"] == 2
    return service, client


def touched_weights(accepted: list[dict]) -> dict[tuple[str, int], float]:
    """Popularity weight the accepted events add per (kind, id)."""
    out: dict[tuple[str, int], float] = {}
    for e in accepted:
        for kind, weights, field in (
            ("room", ROOM_WEIGHT, "streamer_id"),
            ("product", PRODUCT_WEIGHT, "product_id"),
        ):
            if e["event_type"] in weights and field in e:
                key = (kind, e[field])
                out[key] = out.get(key, 0.0) + weights[e["event_type"]]
    return out


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_viewer_a_moves_viewer_b_only_through_bounded_popularity(world, data):
    events = data.draw(st.lists(event_about_a(world), min_size=1, max_size=12))
    service, client = setup(world)
    now = world["now"]
    b_state = service.sessions.state_dict(VIEWER_B, now)
    before = scores(service, VIEWER_B, now)
    answer = client.post("/events", json={"events": events}).json()
    refused = {r["index"] for r in answer["rejected"]}
    accepted = [e for i, e in enumerate(events) if i not in refused]
    assert answer["accepted"] == len(accepted)
    after = scores(service, VIEWER_B, now)
    assert service.sessions.state_dict(VIEWER_B, now) == b_state
    assert before.keys() == after.keys()
    weights = touched_weights(accepted)
    drift = len(accepted) * WINDOW.max_future_s / service.popularity.half_life_s * math.log(2)
    for key, score in before.items():
        change = after[key] - score
        if key not in weights:
            assert change == 0.0, (key, change)
        else:
            assert -drift - 1e-9 <= change <= math.log1p(weights[key]) + 1e-9, (key, change)
