"""Forgetting viewers in a running service's session store: in-process sessions and event log,
and the Redis log several workers share (needs Debian's redis-server; skipped without it)."""

from __future__ import annotations

from recsys.erasure.sessions import forget_in_service
from recsys.privacy.consent import ConsentBook
from recsys.serving import PopularityLiveService
from recsys.serving.consent import ConsentedService
from recsys.serving.state import LocalEventLog, SharedStateService
from tests.test_serving_workers import needs_redis, redis_url, session_events  # noqa: F401


def _service(tiny_world, log):
    now = int(tiny_world.events["ts"].max())
    inner = PopularityLiveService.from_tables(tiny_world, until=now)
    batches = session_events(tiny_world, now, 60, 0)
    return ConsentedService(SharedStateService(inner, log), ConsentBook()), inner, batches


def _forget_one(service, inner, batches, log_read) -> None:
    for b in batches:
        service.ingest(b)
    users = sorted({e.user for b in batches for e in b})
    gone, kept = users[0], users[1]
    assert gone in inner.sessions and gone in inner.known_users
    removed = forget_in_service(service, [gone])
    assert removed["sessions"] == 1
    assert gone not in inner.sessions and kept in inner.sessions
    assert gone not in inner.known_users
    assert all(e.user != gone for e in log_read())


def test_in_process_sessions_and_log_forget_a_viewer(tiny_world):
    log = LocalEventLog()
    service, inner, batches = _service(tiny_world, log)
    _forget_one(service, inner, batches, log.read_new)


@needs_redis
def test_the_shared_redis_log_forgets_a_viewer_in_place(tiny_world, redis_url):  # noqa: F811
    from recsys.serving.redis_log import RedisEventLog

    log = RedisEventLog(url=redis_url, key="test:forget")
    log.reset()
    service, inner, batches = _service(tiny_world, log)
    length = None

    def read_all():
        nonlocal length
        fresh = RedisEventLog(url=redis_url, key="test:forget")  # a worker started later
        length = fresh.length()
        return fresh.read_new()

    _forget_one(service, inner, batches, read_all)
    assert length == len(batches)  # batches rewritten in place, none removed
