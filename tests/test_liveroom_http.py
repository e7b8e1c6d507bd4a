"""The live-room dashboard in the service: replay a day through recsys-replay's code into
recsys-serve's app, then the JSON, the stream, the pages and bad input."""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import pytest
from fastapi.testclient import TestClient
from hydra import compose, initialize_config_module

from recsys.cli import replay as replay_cli
from recsys.cli.serve import build_app
from recsys.liveroom.batch import batch_snapshot
from recsys.liveroom.replay import replay_frame
from recsys.simulation.live_room import live_room_day

CHART_SHA256 = "48444a82d4edcb5bec0f1965faacdde18d9c17db3063d042abada2f705c9f54a"  # 4.5.1


@pytest.fixture(scope="module")
def served(tiny_world_dir, tmp_path_factory):
    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        serve_cfg = compose(config_name="serve", overrides=[f"world.path={tiny_world_dir}"])
        replay_cfg = compose(
            config_name="replay",
            overrides=[f"world.path={tiny_world_dir}", "speed=0", "progress=false", "hours=8"],
        )
    with TestClient(build_app(serve_cfg)) as client:

        def send(events):
            answer = client.post("/live/events", json={"events": events})
            assert answer.status_code == 200, answer.text
            return answer.json()

        out = tmp_path_factory.mktemp("replay")
        summary = replay_cli.run(replay_cfg, send=send, out_dir=out)
        yield client, summary, out


def test_a_replayed_day_is_served_as_the_batch_recompute_says(served, tiny_world_dir):
    client, summary, out = served
    assert summary["accepted"] == summary["events"] > 500
    assert summary["rejected"] == summary["duplicates"] == summary["too_late"] == 0
    assert (out / "incidents.csv").exists()
    rooms = client.get("/live/rooms").json()["rooms"]
    assert rooms, "the day's last rooms are still live"
    frame = replay_frame(live_room_day(tiny_world_dir, 0))
    frame = frame[frame["ts"] < frame["ts"].min() + 8 * 3600]
    for room in rooms:
        snap = client.get(f"/live/rooms/{room['room']}").json()
        batch = batch_snapshot(frame, room["room"], lateness_s=30)
        for k, numbers in batch["windows"].items():
            for name, value in numbers.items():
                assert snap["windows"][k][name] == pytest.approx(value), (room, k, name)
        assert {"questions", "suggestions", "products", "series"} <= set(snap)


def test_the_stream_sends_the_snapshot_as_server_sent_events(served):
    client, _, _ = served
    room = client.get("/live/rooms").json()["rooms"][0]["room"]
    with client.stream("GET", f"/live/rooms/{room}/stream") as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        line = next(line for line in answer.iter_lines() if line.startswith("data: "))
    assert json.loads(line[len("data: ") :])["room"] == room


def test_pages_and_the_vendored_chart_library_are_served(served):
    client, _, _ = served
    room = client.get("/live/rooms").json()["rooms"][0]["room"]
    page = client.get(f"/live/rooms/{room}/page")
    assert page.status_code == 200 and f'data-room="{room}"' in page.text
    assert "/live/static/chart.umd.min.js" in page.text and "cdn" not in page.text.lower()
    chart = client.get("/live/static/chart.umd.min.js")
    assert hashlib.sha256(chart.content).hexdigest() == CHART_SHA256
    shipped = resources.files("recsys.liveroom").joinpath("static", "chart.umd.min.js")
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == CHART_SHA256
    assert client.get("/live").status_code == 200
    assert client.get("/live/static/../app.py").status_code == 404


def test_unknown_rooms_and_bad_input_get_clear_answers(served):
    client, _, _ = served
    assert client.get("/live/rooms/999999999").status_code == 404
    assert client.get("/live/rooms/999999999/page").status_code == 404
    assert client.get("/live/rooms/not-a-number").status_code == 422
    bad_json = client.post(
        "/live/events", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert client.post("/live/events", json=[1, 2]).status_code == 422
    room = client.get("/live/rooms").json()["rooms"][0]
    base = {"session_id": room["room"], "user_id": 1, "ts": room["watermark"]}
    events = [
        {**base, "event_id": 9_000_000_001, "event_type": "comment", "comment": "包邮吗\x07\x1b"},
        {**base, "event_id": 9_000_000_002, "event_type": "comment", "comment": "长" * 20_000},
        {**base, "event_id": 9_000_000_003, "event_type": "click"},
        {**base, "event_id": 9_000_000_004, "event_type": "like", "ts": 12},
        {**base, "event_id": 9_000_000_005, "event_type": "like"},
        {**base, "event_id": 9_000_000_005, "event_type": "like"},
    ]
    report = client.post("/live/events", json={"events": events}).json()
    assert report["rejected"] == 2 and report["sanitised"] == 1
    assert report["too_late"] == 1 and report["duplicates"] == 1 and report["accepted"] == 2
    assert any("row 1: comment" in e for e in report["errors"])
    assert any("row 2: product_id" in e for e in report["errors"])
    snap = client.get(f"/live/rooms/{room['room']}")
    assert "NaN" not in snap.text
