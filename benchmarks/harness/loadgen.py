"""An open-loop HTTP load generator: requests leave on a fixed schedule, whatever the server does.

Request ``i`` is due at ``start + i / rps`` (or at ``start + schedule[i]`` when a schedule is
given: a stream with some requests left out keeps the others' times). A closed loop (send, wait,
send) slows down with the server and so hides its stalls ("coordinated omission"); here a slow
answer never delays the next send, and latency is measured twice: from the time the request was
due (what a user arriving then would see, client queueing included) and from the time its bytes
were written.
In-flight requests are bounded: one due while ``max_in_flight`` are outstanding is not sent and
counts as ``dropped``. Every request ends as exactly one outcome: ``ok`` (2xx), ``status``
(any other status), ``timeout`` (no answer within ``timeout_s`` of its start), ``connection``
(refused, reset, or an unreadable answer) or ``dropped``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .http_client import ConnectionPool, HttpRequest, ProtocolError

OUTCOMES = ("ok", "status", "timeout", "connection", "dropped")
ERRORS = OUTCOMES[1:]


@dataclass(frozen=True)
class LoadConfig:
    rps: float
    max_in_flight: int = 64
    connections: int = 16  # keep-alive connections at most (opened as concurrency needs them)
    timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if self.rps <= 0 or self.max_in_flight < 1 or self.connections < 1 or self.timeout_s <= 0:
            raise ValueError(f"LoadConfig: rps, limits and timeout must be positive, got {self}")


@dataclass
class LoadResult:
    """Per-request times in seconds since the schedule's start; NaN where a time never came."""

    config: LoadConfig
    labels: np.ndarray  # (N,) object
    scheduled: np.ndarray  # (N,) float64
    sent: np.ndarray  # (N,) float64
    done: np.ndarray  # (N,) float64
    status: np.ndarray  # (N,) int64, 0 without a response
    outcome: np.ndarray  # (N,) object, one of OUTCOMES
    first_errors: dict[str, str] = field(default_factory=dict)
    connections_opened: int = 0
    client_cpu_s: float = 0.0
    bodies: dict[int, bytes] = field(default_factory=dict)  # answers of the labels kept

    @classmethod
    def empty(
        cls,
        config: LoadConfig,
        requests: Sequence[HttpRequest],
        schedule: Sequence[float] | None = None,
    ) -> LoadResult:
        n = len(requests)
        due = np.arange(n) / config.rps if schedule is None else np.asarray(schedule, float)
        if due.shape != (n,) or (np.diff(due) < 0).any():
            raise ValueError(f"schedule: {n} non-decreasing times needed, got shape {due.shape}")
        return cls(
            config=config,
            labels=np.array([r.label for r in requests], dtype=object),
            scheduled=due,
            sent=np.full(n, np.nan),
            done=np.full(n, np.nan),
            status=np.zeros(n, dtype=np.int64),
            outcome=np.full(n, "dropped", dtype=object),
        )

    def fail(self, i: int, outcome: str, err: BaseException) -> None:
        self.outcome[i] = outcome
        self.first_errors.setdefault(outcome, f"{type(err).__name__}: {err}"[:300])

    def summary(self, label: str | None = None) -> dict:
        """Counts, rates and latency percentiles, of all requests or of one label's."""
        rows = np.ones(len(self.labels), bool) if label is None else self.labels == label
        outcome, ok = self.outcome[rows], self.outcome[rows] == "ok"
        shed = self.status[rows] == 429
        sent, done = self.sent[rows], self.done[rows]
        errors = {name: int(np.count_nonzero(outcome == name)) for name in ERRORS}
        codes, counts = np.unique(self.status[rows][outcome == "status"], return_counts=True)
        last = np.nanmax(self.done) if np.isfinite(self.done).any() else np.nan
        return {
            "requests": int(rows.sum()),
            "ok": int(ok.sum()),
            "errors": {**errors, "total": sum(errors.values())},
            "status_codes": dict(zip(map(str, codes.tolist()), counts.tolist(), strict=True)),
            "offered_rps": _rate(np.count_nonzero(rows), len(self.labels) / self.config.rps),
            "achieved_rps": _rate(int(ok.sum()), last),
            "latency_ms": {
                "from_schedule": latency_stats(done[ok] - self.scheduled[rows][ok]),
                "from_send": latency_stats(done[ok] - sent[ok]),
            },
            # Requests the server shed (429): how fast the refusal came back.
            "shed_latency_ms": {
                "from_schedule": latency_stats(done[shed] - self.scheduled[rows][shed]),
                "from_send": latency_stats(done[shed] - sent[shed]),
            },
            "send_lag_ms": latency_stats(sent - self.scheduled[rows]),
        }


def _rate(count: int, seconds: float) -> float | None:
    return round(count / seconds, 2) if seconds and np.isfinite(seconds) else None


def latency_stats(seconds: np.ndarray) -> dict:
    """p50/p90/p99/max/mean in milliseconds of the finite values (None when there are none)."""
    ms = seconds[np.isfinite(seconds)] * 1e3
    if not len(ms):
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    stats = {"p50": p50, "p90": p90, "p99": p99, "max": ms.max(), "mean": ms.mean()}
    return {"count": len(ms), **{k: round(float(v), 3) for k, v in stats.items()}}


async def _send(
    pool: ConnectionPool,
    request: HttpRequest,
    i: int,
    result: LoadResult,
    start: float,
    keep_body: bool = False,
) -> None:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(result.config.timeout_s):
            async with pool.connection() as conn:
                result.sent[i] = loop.time() - start
                response = await conn.request(request)
    except TimeoutError:
        result.fail(i, "timeout", TimeoutError(f"no answer within {result.config.timeout_s} s"))
    except (OSError, EOFError, asyncio.IncompleteReadError, ProtocolError) as err:
        result.fail(i, "connection", err)
    else:
        result.done[i] = loop.time() - start
        result.status[i] = response.status
        result.outcome[i] = "ok" if 200 <= response.status < 300 else "status"
        if keep_body:
            result.bodies[i] = response.body
        if result.outcome[i] == "status":
            result.first_errors.setdefault("status", response.body[:300].decode("utf-8", "replace"))


async def run_open_loop(
    host: str,
    port: int,
    requests: Sequence[HttpRequest],
    config: LoadConfig,
    *,
    schedule: Sequence[float] | None = None,
    keep_bodies_of: tuple[str, ...] = (),
) -> LoadResult:
    """Send ``requests`` in order, request ``i`` due ``i / rps`` (or ``schedule[i]``) seconds
    after the start; the answers of requests labelled in ``keep_bodies_of`` are kept."""
    loop = asyncio.get_running_loop()
    result = LoadResult.empty(config, requests, schedule)
    pool = ConnectionPool(host, port, config.connections)
    pending: set[asyncio.Task] = set()
    cpu_before, start = time.process_time(), loop.time()
    for i, request in enumerate(requests):
        wait = start + result.scheduled[i] - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if len(pending) >= config.max_in_flight:
            continue  # its outcome stays "dropped"
        keep = request.label in keep_bodies_of
        task = loop.create_task(_send(pool, request, i, result, start, keep))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending)
    pool.close()
    result.connections_opened = pool.opened
    result.client_cpu_s = round(time.process_time() - cpu_before, 3)
    return result


def run_load(host: str, port: int, requests: Sequence[HttpRequest], config: LoadConfig):
    """``run_open_loop`` on a fresh event loop (for callers without one)."""
    return asyncio.run(run_open_loop(host, port, requests, config))
