"""Several workers, one state: the Redis event log gives the in-process answers, and a worker
killed under load loses no acknowledged event while the others keep answering.

Needs Debian's ``redis-server`` (``apt-get install -y redis-server``; CI installs it): the
tests start their own server on a free port and skip, saying so, where the binary is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from recsys.ranking import SessionEvent
from recsys.serving import PopularityLiveService
from recsys.serving.state import LocalEventLog, SharedStateService, decode_batch, encode_batch

REDIS = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(
    REDIS is None, reason="redis-server not installed (Debian package redis-server)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


def session_events(tables, now: int, n: int, seed: int) -> list[list[SessionEvent]]:
    """Batches of logged-looking events moved to just before ``now``, on live rooms."""
    events = tables.events.sort_values(["ts", "event_id"]).iloc[seed * n : (seed + 1) * n]
    shift = now - 60 - int(events["ts"].max())
    records = events.assign(ts=events["ts"] + shift).to_dict("records")
    out = [SessionEvent.from_record(r) for r in records]
    return [out[i : i + 7] for i in range(0, len(out), 7)]


def test_event_batches_survive_encoding_exactly(tiny_world):
    batch = session_events(tiny_world, int(tiny_world.events["ts"].max()), 50, 0)[0]
    assert decode_batch(encode_batch(batch)) == batch


def test_a_shared_log_in_process_changes_no_answer(tiny_world):
    now = int(tiny_world.live_sessions["start_ts"].iloc[40]) + 900
    plain = PopularityLiveService.from_tables(tiny_world, until=now)
    shared = SharedStateService(
        PopularityLiveService.from_tables(tiny_world, until=now), LocalEventLog()
    )
    users = tiny_world.users["user_id"].tolist()[:20]
    for batch in session_events(tiny_world, now, 140, 3):
        assert plain.ingest(batch) == shared.ingest(batch)
        for user in users[:3] + [batch[0].user]:
            assert shared.recommend(user, now, 10) == plain.recommend(user, now, 10)


@needs_redis
def test_two_workers_on_redis_answer_as_one_in_process_service(tiny_world, redis_url):
    """Batches posted to either of two services sharing a Redis log: both answer every viewer
    exactly as one in-process service that took the same batches in the same order."""
    from recsys.serving.redis_log import RedisEventLog  # only with a Redis server

    now = int(tiny_world.live_sessions["start_ts"].iloc[40]) + 900
    plain = PopularityLiveService.from_tables(tiny_world, until=now)
    logs = [RedisEventLog(url=redis_url, key="test:equal") for _ in range(2)]
    logs[0].reset()
    workers = [
        SharedStateService(PopularityLiveService.from_tables(tiny_world, until=now), log)
        for log in logs
    ]
    users = tiny_world.users["user_id"].tolist()[:10]
    for i, batch in enumerate(session_events(tiny_world, now, 210, 1)):
        workers[i % 2].ingest(batch)
        plain.ingest(batch)
        viewers = users[:2] + [e.user for e in batch[:2]]
        for user in viewers:
            expected = plain.recommend(user, now, 10)
            assert workers[(i + 1) % 2].recommend(user, now, 10) == expected
            assert workers[i % 2].recommend(user, now, 10) == expected
    assert workers[0].applied == workers[1].applied == 210


def _get(port: int, path: str, timeout: float = 2.0) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return json.loads(r.read())


def _post(port: int, events: list[dict], path: str = "/events", timeout: float = 5) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps({"events": events}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as r:
        return json.loads(r.read())


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


@pytest.fixture()
def two_workers(tiny_world_dir, redis_url):
    port = free_port()
    serve = Path(sys.executable).with_name("recsys-serve")
    server = subprocess.Popen(
        [str(serve), f"world.data_dir={tiny_world_dir}", "workers=2", "state.backend=redis",
         f"state.redis_url={redis_url}", "state.key=test:workers", f"port={port}",
         "log_level=warning", "clock.speed=0", "hydra.run.dir=" + str(tiny_world_dir.parent / "s")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(600):
            try:
                _get(port, "/healthz", timeout=0.5)
                if len(_children(server.pid)) == 2:
                    break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        yield port, server
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)


@needs_redis
def test_a_worker_killed_under_load_loses_no_acknowledged_event(two_workers, tiny_world):
    port, server = two_workers
    now = _get(port, "/healthz")["now"]
    sessions = tiny_world.live_sessions
    live = sessions.loc[(sessions["start_ts"] <= now) & (now <= sessions["end_ts"])].iloc[0]
    room = {"session_id": int(live["session_id"]), "streamer_id": int(live["streamer_id"])}
    acked, failed, stop = [], [], threading.Event()

    def post_viewers() -> None:
        for i in range(400):
            if stop.is_set():
                break
            viewer = 10**6 + i  # one new viewer per event: each one is checkable alone
            event = {"ts": now - 1, "user_id": viewer, "event_type": "enter", **room}
            try:
                if _post(port, [event])["accepted"] == 1:
                    acked.append(viewer)
            except (urllib.error.URLError, OSError, ConnectionError):
                failed.append(viewer)

    loader = threading.Thread(target=post_viewers)
    loader.start()
    while len(acked) < 100:
        time.sleep(0.01)
    victim = sorted(_children(server.pid))[0]
    os.kill(victim, signal.SIGKILL)
    loader.join(timeout=120)
    stop.set()
    assert len(acked) + len(failed) == 400 and len(failed) <= 3, failed
    for _ in range(100):  # the supervisor replaces the worker
        if len(_children(server.pid)) == 2 and victim not in _children(server.pid):
            break
        time.sleep(0.1)
    assert len(_children(server.pid)) == 2 and victim not in _children(server.pid)
    pids = set()
    for viewer in acked:  # whichever worker answers holds every acknowledged viewer
        body = _get(port, f"/recommend?user={viewer}&k=100&kind=room")
        watched = [i for i in body["items"] if "you are watching this room" in i["reasons"]]
        assert [i["id"] for i in watched] == [room["streamer_id"]], viewer
    for _ in range(20):
        pids.add(_get(port, "/healthz")["worker_pid"])
    assert pids <= _children(server.pid)


def test_several_workers_need_shared_state(tiny_world_dir):
    from recsys.cli.serve import build_app
    from tests.conftest import compose_config

    cfg = compose_config("serve", [f"world.data_dir={tiny_world_dir}", "workers=2"])
    with pytest.raises(ValueError, match="workers=2 need state shared between them"):
        build_app(cfg)
