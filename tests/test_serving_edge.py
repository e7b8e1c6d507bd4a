"""The service's edge: posted events judged by the offline rules, admission control, metrics."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recsys.data.validation import validate
from recsys.data.validation.online import EventWindow, OnlineEventChecker, clean_text
from recsys.serving import FixedClock, PopularityLiveService, create_app
from recsys.serving.admission import AdmissionConfig
from recsys.serving.protocol import Recommendation, RecommenderService


@pytest.fixture(scope="module")
def room(tiny_world) -> dict:
    """A live session of the tiny world, a product on its shelf and one that is not."""
    s = tiny_world.live_sessions.iloc[len(tiny_world.live_sessions) // 2]
    shelf = tiny_world.showcase.loc[tiny_world.showcase["session_id"] == s["session_id"]]
    off = tiny_world.products.loc[~tiny_world.products["product_id"].isin(shelf["product_id"])]
    return {
        "session_id": int(s["session_id"]),
        "streamer_id": int(s["streamer_id"]),
        "now": int(s["start_ts"]) + 600,
        "on_shelf": int(shelf["product_id"].iloc[0]),
        "off_shelf": int(off["product_id"].iloc[0]),
        "user": int(tiny_world.users["user_id"].iloc[3]),
    }


@pytest.fixture()
def client(tiny_world, room):
    service = PopularityLiveService.from_tables(tiny_world, until=room["now"])
    checker = OnlineEventChecker.from_tables(tiny_world, window=EventWindow(3600, 60))
    app = create_app(service, clock=FixedClock(room["now"]), checker=checker)
    return TestClient(app)


def bad_events(room: dict) -> list[tuple[dict, str]]:
    """The faults a client was seen to post, each with the start of its expected reason."""
    in_room = {"session_id": room["session_id"], "streamer_id": room["streamer_id"]}
    user, now = room["user"], room["now"]
    return [
        ({"ts": 99999999999, "user_id": user, "event_type": "enter", **in_room},
         "ts: outside session window (99999999999 not in"),
        ({"ts": 5, "user_id": user, "event_type": "click", "product_id": room["on_shelf"]},
         "ts: outside service window (5 not in"),
        ({"ts": now, "user_id": user, "event_type": "enter", "session_id": room["session_id"],
          "streamer_id": room["streamer_id"] + 1}, "streamer_id: not the session's streamer"),
        ({"ts": now, "user_id": user, "event_type": "click", "session_id": room["session_id"],
          "product_id": room["off_shelf"]}, "product_id: not on the session's shelf"),
        ({"ts": now, "user_id": user, "event_type": "comment", "comment": "\x00\x1b\u200b",
          **in_room}, "comment: empty after cleaning"),
        ({"ts": now, "user_id": user, "event_type": "follow", "streamer_id": 10**9},
         "streamer_id: unknown streamer 1000000000"),
    ]  # fmt: skip


def test_every_bad_event_is_refused_with_its_reason_and_counted(client, room):
    good = {"ts": room["now"] - 5, "user_id": room["user"], "event_type": "enter"}
    good |= {"session_id": room["session_id"], "streamer_id": room["streamer_id"]}
    bad = bad_events(room)
    body = client.post("/events", json={"events": [good] + [e for e, _ in bad]}).json()
    assert body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == list(range(1, len(bad) + 1))
    for rejected, (_, reason) in zip(body["rejected"], bad, strict=True):
        assert rejected["reason"].startswith(reason), rejected
    health = client.get("/healthz").json()
    assert health["events_accepted"] == 1 and health["events_rejected"] == len(bad)
    assert health["events_rejected_by_rule"]["ts: outside service window"] >= 1
    text = client.get("/metrics").text
    assert 'rule="streamer_id: not the session\'s streamer"} 1' in text
    assert "recsys_events_accepted_total" in text and 'endpoint="/events"' in text


def test_online_reasons_are_the_offline_reasons(tiny_world, room):
    """The same faulty events, logged in the events table or posted, fail with the same words
    (online adds its own rules' reasons after the shared ones)."""
    posted = [bad_events(room)[i][0] for i in (0, 2, 5)]
    rows = [{c: None for c in tiny_world.events.columns} | e | {"event_id": 10**9 + i}
            for i, e in enumerate(posted)]  # fmt: skip
    events = pd.DataFrame(rows, columns=tiny_world.events.columns)
    offline = validate(replace(tiny_world, events=events), mode="lenient")
    online = OnlineEventChecker.from_tables(tiny_world).check(posted, room["now"])
    offline_reasons = offline.rejected["events"]["_reason"].tolist()
    assert len(offline_reasons) == len(online.rejected) == 3
    for on, off in zip(online.rejected, offline_reasons, strict=True):
        assert on.reason.startswith(off), (on.reason, off)


def test_comment_text_is_normalised_and_stripped_of_control_characters():
    assert clean_text(" ｈｉ\x00 there\u200b\x07\n") == "hi there"
    assert clean_text("直播间 好！") == "直播间 好!"


def test_a_huge_body_is_refused_before_it_is_read(tiny_world, room):
    """A 100 MB body is declared and never sent: the answer comes without waiting for it."""
    import uvicorn  # here: only this test runs a real server

    service = PopularityLiveService.from_tables(tiny_world, until=room["now"])
    app = create_app(service, clock=FixedClock(room["now"]))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        with socket.create_connection(sock.getsockname(), timeout=5) as conn:
            conn.sendall(
                b"POST /events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"content-length: 100000000\r\n\r\n"
            )
            answer = conn.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 413"), answer
        assert "the limit is 2097152 bytes" in answer
    finally:
        server.should_exit = True
        thread.join(timeout=5)


def test_a_streamed_body_is_refused_once_past_the_limit(tiny_world, room):
    service = PopularityLiveService.from_tables(tiny_world, until=room["now"])
    app = create_app(service, admission=AdmissionConfig(max_body_bytes=1000))
    chunks = (b"x" * 400 for _ in range(10))  # no content-length: sent chunked
    response = TestClient(app).post("/events", content=chunks)
    assert response.status_code == 413


class Gate(RecommenderService):
    """Blocks every call until released, so requests pile up."""

    def __init__(self) -> None:
        self.open = threading.Event()

    def recommend(self, user, now, k, kinds=("room", "product")) -> Recommendation:
        self.open.wait(10)
        return Recommendation(user, now, False, [])

    def ingest(self, events) -> int:
        return len(events)


def test_beyond_the_queue_requests_get_a_fast_429_and_late_ones_a_503():
    gate = Gate()
    admission = AdmissionConfig(max_in_flight=2, deadline_ms=100, retry_after_s=3)
    client = TestClient(create_app(gate, clock=FixedClock(5), admission=admission))
    results = {}

    def call(name):
        results[name] = client.get("/recommend", params={"user": 1})

    first = threading.Thread(target=call, args=("running",))
    first.start()
    time.sleep(0.2)
    second = threading.Thread(target=call, args=("queued",))
    second.start()
    time.sleep(0.2)
    began = time.perf_counter()
    shed = client.get("/recommend", params={"user": 2})
    elapsed = time.perf_counter() - began
    assert shed.status_code == 429 and shed.headers["retry-after"] == "3"
    assert elapsed < 0.5  # answered without waiting for the worker (which is blocked)
    assert client.get("/healthz").status_code == 200  # health is never shed
    gate.open.set()
    first.join(), second.join()
    assert results["running"].status_code == 200
    assert results["queued"].status_code == 503  # it waited past its 100 ms deadline
    assert results["queued"].headers["retry-after"] == "3"
    rejected = client.get("/healthz").json()["requests_rejected"]
    assert rejected == {"queue_full": 1, "deadline": 1}
    metrics = client.get("/metrics").text
    assert 'recsys_rejected_total{worker="' in metrics and 'reason="queue_full"} 1' in metrics
    assert 'recsys_request_seconds_bucket{worker="' in metrics and 'le="+Inf"' in metrics


def test_admission_bounds_the_wait_the_queue_implies():
    """Two requests ahead at 50 ms each imply 100 ms of waiting: over a 60 ms bound, refused."""
    gate = Gate()
    admission = AdmissionConfig(max_in_flight=8, max_wait_ms=60, deadline_ms=5000)
    app = create_app(gate, clock=FixedClock(5), admission=admission)
    client = TestClient(app)
    app.state.ctx.metrics.service_s = 0.05
    calls = [
        threading.Thread(target=client.get, args=("/recommend",), kwargs={"params": {"user": i}})
        for i in range(2)
    ]
    for call in calls:
        call.start()
        time.sleep(0.2)
    assert client.get("/recommend", params={"user": 9}).status_code == 429
    gate.open.set()
    for call in calls:
        call.join()
    assert client.get("/healthz").json()["requests_rejected"] == {"queue_full": 1}
