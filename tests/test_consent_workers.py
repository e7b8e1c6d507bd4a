"""Consent holds across service workers: a decision posted to one worker is seen by the next
request on any other, erasure removes it from the shared list and from every worker's book, and
a worker started later replays the list.

The Redis tests need Debian's ``redis-server`` (CI installs it) and skip, saying so, without it;
two ``recsys-serve`` apps built by ``build_app`` over one Redis stand for two workers (each is
what a forked worker runs), and one test runs ``recsys-serve workers=2`` itself.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from fastapi.testclient import TestClient

from recsys.liveroom.shared import LocalBatches
from recsys.privacy.consent import ConsentBook, Decision
from recsys.privacy.shared_consent import (
    RELOAD,
    SharedConsentBook,
    decode_decisions,
    encode_decisions,
    share_consent,
)
from recsys.serving.consent import ANONYMOUS_USER, NO_CONSENT
from tests.conftest import compose_config
from tests.test_consent import _session_events
from tests.test_serving_workers import (  # noqa: F401
    _children,
    needs_redis,
    redis_url,
    two_workers,
)


def test_decisions_survive_encoding_exactly():
    ds = [Decision(7, "marketing", False, 10, "sms"), Decision(2**63 - 2, "coupons", True, 0)]
    assert decode_decisions(encode_decisions(ds)) == ds


def test_two_books_over_one_list_answer_as_one_book():
    """Decisions taken by either book, in any order of ts: both answer as one plain book that
    took them in the same order (latest ts wins, a tie goes to the later decision)."""
    items: list[bytes] = []
    seed = ConsentBook([Decision(1, "personalisation", False, 5)])
    a = share_consent(seed, LocalBatches(items), fresh=True)
    b = SharedConsentBook(LocalBatches(items))
    plain = ConsentBook([Decision(1, "personalisation", False, 5)])
    steps = [(a, Decision(1, "personalisation", True, 3)),  # older: loses to ts 5
             (b, Decision(2, "personalisation", False, 9)),
             (a, Decision(2, "personalisation", True, 9)),  # a tie: the later one holds
             (b, Decision(1, "marketing", False, 4, "push"))]  # fmt: skip
    for book, decision in steps:
        book.decide(decision)
        plain.decide(decision)
        for other in (a, b):
            assert other.allowed([1, 2, 3], "personalisation").tolist() == \
                plain.allowed([1, 2, 3], "personalisation").tolist()  # fmt: skip
            assert other.allows(1, "marketing", "push") is plain.allows(1, "marketing", "push")
    assert a.allowed([1, 2], "personalisation").tolist() == [False, True]
    assert b.table().equals(plain.table())


def test_forgetting_rewrites_the_list_and_every_book_rebuilds():
    items: list[bytes] = []
    a = share_consent(ConsentBook([Decision(1, "coupons", False, 0)]), LocalBatches(items),
                      fresh=True)  # fmt: skip
    b = SharedConsentBook(LocalBatches(items))
    b.decide(Decision(1, "personalisation", False, 2))
    b.decide(Decision(2, "personalisation", False, 2))
    assert a.forget([3]) == 0 and RELOAD not in items  # nobody's decisions: no rebuild
    assert a.forget([1]) == 2
    assert items[-1] == RELOAD and b"[1," not in b"".join(items)  # the marker names nobody
    assert b.allows(1, "personalisation") and b.allows(1, "coupons") and b.reloads == 1
    assert not b.allows(2, "personalisation") and set(b.table()["user_id"]) == {2}
    later = SharedConsentBook(LocalBatches(items))  # a worker started after the erasure
    assert set(later.table()["user_id"]) == {2}


def test_several_workers_without_redis_refuse_to_start(tiny_world_dir):
    from recsys.cli.serve import build_app

    cfg = compose_config("serve", [f"world.path={tiny_world_dir}", "workers=2"])
    with pytest.raises(ValueError, match="consent decisions\\): state.backend=redis"):
        build_app(cfg)


# -- two services over one Redis -------------------------------------------------------------


def _app(tiny_world_dir, redis_url, *, fresh: bool):  # noqa: F811
    from recsys.cli.serve import build_app

    cfg = compose_config("serve", [
        f"world.path={tiny_world_dir}", "state.backend=redis", f"state.redis_url={redis_url}",
        "state.key=test:consent:events", "consent.key=test:consent", "live_rooms.key=test:c:live",
        f"state.fresh={str(fresh).lower()}", "clock.speed=0",
    ])  # fmt: skip
    return TestClient(build_app(cfg))


def _recommend(client, user: int) -> dict:
    r = client.get("/recommend", params={"user": user, "k": 10})
    assert r.status_code == 200, r.text
    return r.json()


def _consent(client, user: int, granted: bool) -> None:
    body = {"user_id": user, "purpose": "personalisation", "granted": granted}
    r = client.post("/consent", json=body)
    assert r.status_code == 200 and r.json()["allowed"] is granted, r.text


@needs_redis
def test_consent_posted_to_one_worker_holds_on_the_next_request_to_another(
    tiny_world,
    tiny_world_dir,
    redis_url,  # noqa: F811
):
    from recsys.serving.redis_log import RedisBatches

    a = _app(tiny_world_dir, redis_url, fresh=True)
    b = _app(tiny_world_dir, redis_url, fresh=False)  # a second worker: it keeps the lists
    events = b.app.state.ctx.recommender.inner.log  # consent, then the log it carries
    assert b.app.state.consent.batches.riders == [events.batches]
    users = tiny_world.users["user_id"].astype(int).tolist()
    user, other = users[0], users[1]
    now = _get_now(a)
    for viewer in (user, other):
        r = a.post("/events", json={"events": _session_events(tiny_world, now, viewer)})
        assert r.status_code == 200 and r.json()["accepted"] > 0
    anonymous = _recommend(b, ANONYMOUS_USER)["items"]
    personal = _recommend(b, user)
    assert personal["personalised_reason"] is None and personal["items"] != anonymous
    # Withdrawn through A: the very next request, served by B, is not personalised.
    _consent(a, user, False)
    out = _recommend(b, user)
    assert out["cold_start"] and out["personalised_reason"] == NO_CONSENT
    assert out["items"] == anonymous
    # B keeps their new events out of per-viewer state too.
    b.post("/events", json={"events": _session_events(tiny_world, now, user)})
    assert b.get("/healthz").json()["events_without_consent"] > 0
    # Granted again through B: A personalises again on its next request.
    _consent(b, user, True)
    assert _recommend(a, user)["items"] == personal["items"]
    _consent(b, other, False)
    # Erasure through A: the user's decisions leave the list and B's book.
    forgot = a.post("/forget", json={"users": [user]})
    assert forgot.status_code == 200 and forgot.json()["consent_decisions"] == 2
    listed = SharedConsentBook(RedisBatches(url=redis_url, key="test:consent"))
    assert user not in set(listed.table()["user_id"]) and other in set(listed.table()["user_id"])
    _recommend(b, user)
    assert user not in set(b.app.state.consent.table()["user_id"])
    # A worker started now replays the list: the other viewer's withdrawal holds there too.
    assert not listed.allows(other, "personalisation")
    c = _app(tiny_world_dir, redis_url, fresh=False)
    assert _recommend(c, other)["personalised_reason"] == NO_CONSENT


def _get_now(client) -> int:
    return int(client.get("/healthz").json()["now"])


def _per_worker(port: int) -> dict:
    """An open keep-alive connection to each of the two workers, by pid: connections are
    opened until both have taken one (the kernel hands each to one of them)."""
    import http.client

    out, spare = {}, []
    for _ in range(64):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        pid = _ask(conn, "GET", "/healthz")["worker_pid"]
        if pid in out:
            spare.append(conn)
        else:
            out[pid] = conn
        if len(out) == 2:
            break
    for conn in spare:
        conn.close()
    return out


def _ask(conn, method: str, path: str, body: dict | None = None) -> dict:
    import json

    data = None if body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers={"content-type": "application/json"})
    response = conn.getresponse()
    out = json.loads(response.read())
    assert response.status == 200, out
    return out


@needs_redis
def test_recsys_serve_with_two_workers_honours_a_withdrawal_on_every_worker(
    two_workers,  # noqa: F811
    tiny_world,
):
    port, server = two_workers
    workers = _per_worker(port)
    assert len(workers) == 2, "every connection went to one worker"
    (pid_a, a), (pid_b, b) = sorted(workers.items())
    users = tiny_world.users["user_id"].astype(int).tolist()[2:12]
    for granted, by, other in ((False, a, b), (True, b, a), (False, a, b)):
        for user in users:  # each decision through one worker, the next request to the other
            body = {"user_id": user, "purpose": "personalisation", "granted": granted}
            assert _ask(by, "POST", "/consent", body)["allowed"] is granted
            out = _ask(other, "GET", f"/recommend?user={user}&k=5")
            assert out["personalised_reason"] == (None if granted else NO_CONSENT), (user, out)
    # Opted out on both workers: 0 personalised answers.
    answers = [_ask(c, "GET", f"/recommend?user={u}&k=5") for c in (a, b) for u in users]
    assert sum(r["personalised_reason"] != NO_CONSENT for r in answers) == 0
    health = [_ask(c, "GET", "/healthz") for c in (a, b)]
    assert {h["worker_pid"] for h in health} == {pid_a, pid_b}
    read = {(h["consent"], h["consent_batches_read"], h["consent_decisions"]) for h in health}
    assert len(read) == 1, read  # both workers read the same list to its end
    kind, _, decisions = read.pop()
    assert kind == "shared" and decisions >= 30
    # A worker that dies is replaced by a fork of the supervisor, which never read the
    # decisions: the replacement replays them before its first answer.
    a.close()
    os.kill(pid_a, signal.SIGKILL)
    for _ in range(100):
        if len(_children(server.pid)) == 2 and pid_a not in _children(server.pid):
            break
        time.sleep(0.1)
    deadline = time.monotonic() + 60  # a loaded machine starts the replacement slowly
    while True:
        fresh = {pid: c for pid, c in _per_worker(port).items() if pid != pid_b}
        if fresh or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert fresh and pid_a not in fresh, "no connection reached the replacement"
    replacement = fresh.popitem()[1]
    answers = [_ask(replacement, "GET", f"/recommend?user={u}&k=5") for u in users]
    assert sum(r["personalised_reason"] != NO_CONSENT for r in answers) == 0


@needs_redis
def test_a_list_carried_by_another_is_read_in_the_same_round_trip_and_never_stale(redis_url):  # noqa: F811
    """The event log rides on the consent list: after the consent read, the log's next read on
    that thread costs no round trip and holds what was appended before the consent read; its
    own append, or a read of it on another thread in between, makes it ask Redis again."""
    from recsys.serving.redis_log import RedisBatches

    def lists(tag: str):
        consent = RedisBatches(url=redis_url, key=f"test:ride:c{tag}")
        events = RedisBatches(url=redis_url, key=f"test:ride:e{tag}")
        consent.reset()
        events.reset()
        consent.carry(events)
        return consent, events

    consent, events = lists("1")
    other = RedisBatches(url=redis_url, key="test:ride:e1")  # another worker's reader
    other.append(b"a")
    consent.read_new()
    asked = events._client.lrange
    events._client.lrange = None  # a read that went to Redis would fail here
    assert events.read_new() == (0, [b"a"])
    events._client.lrange = asked
    consent.read_new()
    events.append(b"b")  # its own append: the read ridden before it must not hide it
    assert events.read_new() == (1, [b"b"])
    consent.read_new()
    other.append(b"c")
    assert events.read_new() == (2, [])  # the ridden read: as of the consent read
    consent.read_new()
    reader = threading.Thread(target=events.read_new)  # another thread reads c first
    reader.start()
    reader.join()
    other.append(b"d")
    assert events.read_new() == (3, [b"d"])  # its cursor moved: the ridden batches are dropped
    with pytest.raises(ValueError, match="not redis://elsewhere"):
        RedisBatches(url="redis://elsewhere:1/0", key="x").carry(events)


def test_an_append_and_the_read_after_it_take_one_round_trip(redis_url):  # noqa: F811
    """An ingest appends its batch and reads what came since the last read in one pipeline: the
    batches of others, its own, in the list's order."""
    from recsys.serving.redis_log import RedisBatches

    events = RedisBatches(url=redis_url, key="test:append-read")
    events.reset()
    other = RedisBatches(url=redis_url, key="test:append-read")  # another worker's writer
    other.append(b"a")
    asked = events._client.rpush, events._client.lrange
    events._client.rpush = events._client.lrange = None  # a command of its own would fail here
    assert events.append_and_read(b"b") == (0, [b"a", b"b"])
    events._client.rpush, events._client.lrange = asked
    other.append(b"c")
    assert events.read_new() == (2, [b"c"])
