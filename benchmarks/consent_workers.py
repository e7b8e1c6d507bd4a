"""What sharing consent between service workers costs a request, and that it holds at once.

    python benchmarks/consent_workers.py [--preset tiny] [--rounds 20] [--block 200] [--label NAME]

Starts a private ``redis-server`` and builds, over one world's popularity-live service, three
consent wirings of a worker with ``state.backend=redis``, each in front of its own
``SharedStateService`` over a Redis event log as in ``recsys-serve``: a book of its own in the
process (``ConsentBook``, what every worker held before consent was shared); the book shared
through Redis (``SharedConsentBook``) read apart from the event log; and the shared book
carrying the log's read in one pipeline (``RedisBatches.carry``, what ``recsys-serve`` wires).
Blocks of ``recommend`` calls for random viewers, and of ``ingest`` calls (one room entry
each, for a tenth of them), alternate between the arms (order reversed
every round, so a drift of the shared machine falls on all); the report gives median / p90 /
p99 per call, ratios to the own book, the Redis round trips per call (counted at the client:
each command, or each pipeline, is one), the cost of one consent read alone, and whether a
withdrawal posted through one book holds on the next ask through a second over the same list.

Writes ``benchmarks/results/consent_workers[_label].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness.command import recorded_command
from harness.processes import RedisProcess, sigterm_unwinds

from recsys.data.tables import load_tables
from recsys.datasets import ensure_world
from recsys.privacy.consent import ConsentBook, Decision
from recsys.privacy.shared_consent import SharedConsentBook, share_consent
from recsys.ranking.events import SessionEvent
from recsys.serving import PopularityLiveService
from recsys.serving.consent import NO_CONSENT, ConsentedService
from recsys.serving.redis_log import RedisBatches, RedisEventLog
from recsys.serving.state import SharedStateService

RESULTS = Path(__file__).parent / "results"
ROUND_TRIPS = {"n": 0}


class _Counted:
    """A Redis client that counts its round trips: each command, and each pipeline once."""

    SINGLE = ("lrange", "rpush", "llen", "delete", "lset")

    def __init__(self, client) -> None:
        self._client = client

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if name in self.SINGLE:
            return _counting(attr)
        if name == "pipeline":
            return lambda **kw: _CountedPipeline(attr(**kw))
        return attr


class _CountedPipeline:
    def __init__(self, pipe) -> None:
        self._pipe = pipe

    def __getattr__(self, name: str):
        attr = getattr(self._pipe, name)
        return _counting(attr) if name == "execute" else attr


def _counting(fn):
    def counted(*args, **kwargs):
        ROUND_TRIPS["n"] += 1
        return fn(*args, **kwargs)

    return counted


def _count_round_trips(services) -> None:
    """Every Redis list of the arms counts its round trips."""
    for service in services.values():
        lists = [service.inner.log.batches, getattr(service.book, "batches", None)]
        for batches in filter(None, lists):
            batches._client = _Counted(batches._client)


ARMS = ("own book", "shared, two reads", "shared, one read")
CALLS = ("recommend", "ingest")


def _services(tables, now: int, url: str) -> dict[str, ConsentedService]:
    """Each arm over its own keys: a book of its own; the shared book read apart from the
    event log; the shared book carrying the log's read, as ``recsys-serve`` wires it."""
    out = {}
    for i, arm in enumerate(ARMS):
        inner = PopularityLiveService.from_tables(tables, until=now)
        log = RedisEventLog(url=url, key=f"bench:events:{i}")
        log.reset()
        book = ConsentBook()
        if arm != "own book":
            batches = RedisBatches(url=url, key=f"bench:consent:{i}")
            book = share_consent(book, batches, fresh=True)
            if arm == "shared, one read":
                batches.carry(log.batches)
        out[arm] = ConsentedService(SharedStateService(inner, log), book)
    return out


def _block(service: ConsentedService, users: np.ndarray, now: int) -> tuple[list[float], int]:
    times, trips = [], ROUND_TRIPS["n"]
    for user in users.tolist():
        t0 = time.perf_counter()
        service.recommend(int(user), now, 10)
        times.append(time.perf_counter() - t0)
    return times, ROUND_TRIPS["n"] - trips


def _ingest_block(service, events: list[SessionEvent]) -> tuple[list[float], int]:
    times, trips = [], ROUND_TRIPS["n"]
    for event in events:
        t0 = time.perf_counter()
        service.ingest([event])
        times.append(time.perf_counter() - t0)
    return times, ROUND_TRIPS["n"] - trips


def _entries(tables, now: int, users: np.ndarray) -> list[SessionEvent]:
    """One room entry per viewer, into a room live at ``now``."""
    s = tables.live_sessions
    room = s.loc[(s["start_ts"] <= now) & (now <= s["end_ts"])].iloc[0]
    return [
        SessionEvent.from_record(
            {
                "ts": now - 1,
                "user_id": int(u),
                "event_type": "enter",
                "session_id": int(room["session_id"]),
                "streamer_id": int(room["streamer_id"]),
            }
        )  # fmt: skip
        for u in users.tolist()
    ]


def _sync_alone(book: SharedConsentBook, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        book.sync()
        times.append(time.perf_counter() - t0)
    return times


def _withdrawal(url: str, user: int, now: int, services) -> dict:
    """A decision posted through one book, asked through a second over the same list."""
    other = SharedConsentBook(RedisBatches(url=url, key="bench:consent:2"))
    other.sync()
    t0 = time.perf_counter()
    services["shared, one read"].book.decide(Decision(user, "personalisation", False, now))
    posted = time.perf_counter()
    seen = not other.allows(user, "personalisation")
    held = time.perf_counter()
    inner = services["shared, one read"].inner
    answer = ConsentedService(inner, other).recommend(user, now, 10)
    return {"post_ms": 1e3 * (posted - t0), "next_ask_ms": 1e3 * (held - posted),
            "withdrawal_held_on_next_ask": bool(seen),
            "next_answer_reason": answer.personalised_reason,
            "next_answer_not_personalised": answer.personalised_reason == NO_CONSENT}  # fmt: skip


def _stats(times: list[float]) -> dict:
    a = np.asarray(times) * 1e6
    return {
        "calls": len(a),
        "median_us": float(np.median(a)),
        "p90_us": float(np.percentile(a, 90)),
        "p99_us": float(np.percentile(a, 99)),
    }


def run(args) -> dict:
    tables = load_tables(ensure_world(args.preset, 0, None))
    s = tables.live_sessions
    now = int(s["start_ts"].iloc[len(s) // 2]) + 600
    users = tables.users["user_id"].to_numpy(np.int64)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp, sigterm_unwinds():
        redis = RedisProcess(Path(tmp))
        try:
            services = _services(tables, now, redis.url)
            _count_round_trips(services)
            times = {(arm, call): [] for arm in ARMS for call in CALLS}
            trips = dict.fromkeys(times, 0)
            for r in range(args.rounds):
                picked = rng.choice(users, args.block)
                entries = _entries(tables, now, picked[: args.block // 10])
                arms = list(ARMS) if r % 2 == 0 else list(ARMS)[::-1]
                for arm in arms:
                    done = {"recommend": _block(services[arm], picked, now),
                            "ingest": _ingest_block(services[arm], entries)}  # fmt: skip
                    for call, (t, n) in done.items():
                        times[arm, call] += t
                        trips[arm, call] += n
            sync = _sync_alone(services["shared, two reads"].book, args.rounds * args.block)
            held = _withdrawal(redis.url, int(users[0]), now, services)
        finally:
            redis.stop()
    calls = {
        call: {arm: {**_stats(times[arm, call]),
                     "round_trips_per_call": trips[arm, call] / len(times[arm, call])}
               for arm in ARMS}
        for call in CALLS
    }  # fmt: skip
    return {
        "command": recorded_command("benchmarks/consent_workers.py", sys.argv[1:]),
        "preset": args.preset,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f} at the end",
        "calls": calls,
        "ratios_over_own_book": {
            call: {
                arm: {
                    "median": a["median_us"] / arms["own book"]["median_us"],
                    "p99": a["p99_us"] / arms["own book"]["p99_us"],
                }
                for arm, a in arms.items()
                if arm != "own book"
            }
            for call, arms in calls.items()
        },
        "consent_sync_alone": _stats(sync),
        "withdrawal": held,
    }


def markdown(r: dict) -> str:
    lines = [
        f"# Consent shared by workers: cost per request ({r['preset']} world)",
        "",
        f"Command: `{r['command']}`  ",
        f"Machine: {r['machine']}; one private redis-server on localhost.",
        "",
        "| call | consent book | calls | median µs | p90 µs | p99 µs | Redis round trips / call |",
        "|---|---|---|---|---|---|---|",
    ]
    for call, arms in r["calls"].items():
        for arm, a in arms.items():
            lines.append(f"| {call} | {arm} | {a['calls']} | {a['median_us']:.0f} | "
                         f"{a['p90_us']:.0f} | {a['p99_us']:.0f} | "
                         f"{a['round_trips_per_call']:.2f} |")  # fmt: skip
    s, w = r["consent_sync_alone"], r["withdrawal"]
    lines += [
        "",
        "Over the own book: "
        + "; ".join(
            f"{call} {arm} median x{q['median']:.2f}, p99 x{q['p99']:.2f}"
            for call, arms in r["ratios_over_own_book"].items()
            for arm, q in arms.items()
        )
        + f". One consent read alone (nothing new): median {s['median_us']:.0f} µs, "
        f"p99 {s['p99_us']:.0f} µs.",
        "",
        f"A withdrawal posted through one book ({w['post_ms']:.2f} ms) held on the next ask "
        f"through another: {w['withdrawal_held_on_next_ask']} ({w['next_ask_ms']:.2f} ms); that "
        f"book's next answer not personalised: {w['next_answer_not_personalised']}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    result = run(args)
    name = "consent_workers" + (f"_{args.label}" if args.label else "")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
