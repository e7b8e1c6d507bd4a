"""Live rooms shared by workers: two stores folding one ordered list of posted batches show
exactly what one store fed the same batches shows, in process and over Redis."""

from __future__ import annotations

import json

import pytest

from recsys.liveroom.replay import replay_frame, to_records
from recsys.liveroom.rooms import LiveRooms
from recsys.liveroom.shared import LocalBatches, SharedLiveRooms
from recsys.simulation.live_room import live_room_day
from tests.test_serving_workers import _get, _post, needs_redis, redis_url, two_workers  # noqa: F401


@pytest.fixture(scope="module")
def batches_of_a_day(tiny_world_dir):
    records = to_records(replay_frame(live_room_day(tiny_world_dir, 0)).head(6_000))
    return [records[i : i + 250] for i in range(0, len(records), 250)]


def _check_workers_equal_one_store(a, b, batches) -> None:
    alone = LiveRooms()
    for i, batch in enumerate(batches):
        worker = (a, b)[i % 2]  # the load balancer sends posts to either worker
        assert worker.ingest_records(batch) == alone.ingest_records(batch)
    rooms = alone.live()
    assert rooms and a.live() == rooms and b.live() == rooms
    for room in (r["room"] for r in rooms):
        assert a.snapshot(room) == alone.snapshot(room) == b.snapshot(room)
    assert a.version == b.version == alone.version


def test_two_workers_in_process_show_what_one_store_shows(batches_of_a_day):
    first = LocalBatches()
    a = SharedLiveRooms(LiveRooms(), first)
    b = SharedLiveRooms(LiveRooms(), LocalBatches(first.items))
    _check_workers_equal_one_store(a, b, batches_of_a_day)


@needs_redis
def test_two_workers_over_redis_show_what_one_store_shows(batches_of_a_day, redis_url):  # noqa: F811
    from recsys.serving.redis_log import RedisBatches  # only with a Redis server

    lists = [RedisBatches(url=redis_url, key="test:live") for _ in range(2)]
    lists[0].reset()
    a, b = (SharedLiveRooms(LiveRooms(), batches) for batches in lists)
    _check_workers_equal_one_store(a, b, batches_of_a_day)


@needs_redis
def test_recsys_serve_with_two_workers_serves_one_dashboard(batches_of_a_day, two_workers):  # noqa: F811
    port, _ = two_workers
    reports = [_post(port, batch, "/live/events", timeout=10) for batch in batches_of_a_day[:12]]
    assert sum(r["accepted"] for r in reports) > 0
    # Requests land on either worker: every answer is the same.
    answers = {json.dumps(_get(port, "/live/rooms"), sort_keys=True) for _ in range(12)}
    assert len(answers) == 1 and json.loads(answers.pop())["rooms"]


def _askers(store: LiveRooms) -> set[int]:
    return {u for q in store.questions.values() for users in q.askers.values() for u in users}


def test_forgetting_a_viewer_reaches_the_list_and_every_refold(batches_of_a_day):
    first = LocalBatches()
    a = SharedLiveRooms(LiveRooms(), first)
    for batch in batches_of_a_day:
        a.ingest_records(batch)
    asker = min(_askers(a.inner))
    removed = a.forget([asker])
    assert removed["live_records"] > 0 and removed["live_questions"] > 0
    assert asker not in _askers(a.inner)
    assert all(int(r["user_id"]) != asker for b in first.items for r in json.loads(b))
    restarted = SharedLiveRooms(LiveRooms(), LocalBatches(first.items))
    restarted.sync()
    assert asker not in _askers(restarted.inner) and _askers(restarted.inner)


def test_recsys_serve_forgets_behind_the_operator_token(tiny_world_dir, tmp_path, batches_of_a_day):
    from fastapi.testclient import TestClient
    from hydra import compose, initialize_config_module

    from recsys.cli.serve import build_app

    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("- {name: ops, scopes: [operator, ingest], token: ops-secret}\n")
    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        cfg = compose(config_name="serve", overrides=[f"world.path={tiny_world_dir}",
                                                      f"auth.tokens_file={tokens}"])  # fmt: skip
    ops = {"authorization": "Bearer ops-secret"}
    with TestClient(build_app(cfg)) as client:
        for batch in batches_of_a_day:
            client.post("/live/events", json={"events": batch}, headers=ops)
        asker = min(_askers(client.app.state.live_rooms))
        assert client.post("/forget", json={"users": [asker]}).status_code == 401
        answer = client.post("/forget", json={"users": [asker]}, headers=ops)
        assert answer.status_code == 200 and answer.json()["live_questions"] > 0
        assert asker not in _askers(client.app.state.live_rooms)
        assert client.post("/forget", json={"users": []}, headers=ops).status_code == 422
