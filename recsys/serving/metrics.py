"""Service metrics, rendered in the Prometheus text exposition format at ``/metrics``.

What an operator needs to see that the service holds: requests and their latency per endpoint
and status, requests refused before any work and why (``recsys_rejected_total{reason=...}``:
body too large, queue full, deadline passed), events refused per rule
(``recsys_events_rejected_total{rule="ts: outside service window"}``) and the depth of the
admission queue. Label values come from a bounded set (endpoints, statuses, rule keys), so
the series stay few. Each worker process keeps its own numbers; ``worker`` labels them.

Everything is updated from the event loop or under one lock, and ``render`` is cheap enough to
scrape every second.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import Counter

# Latency buckets in seconds: fine below the 50 ms the service aims at, coarse above.
BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
    2.5,
)  # fmt: skip


class Histogram:
    """Cumulative-bucket latency histogram of one series."""

    __slots__ = ("counts", "sum", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1


def _labels(**labels: str) -> str:
    escaped = (
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + ",".join(escaped) + "}"


class Metrics:
    """Counters, latency histograms and the queue gauge of one worker process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, int]] = Counter()  # (method, endpoint, status)
        self.latency: dict[str, Histogram] = {}
        self.rejected: Counter[str] = Counter()
        self.events_accepted = 0
        self.events_refused = 0
        self.events_rejected: Counter[str] = Counter()  # by rule
        self.queue_depth = 0
        self.service_s = 0.0  # moving average of the worker's time per request

    def served(self, seconds: float) -> None:
        """One request's time on the worker; the average follows the last ~20 requests."""
        self.service_s += 0.05 * (seconds - self.service_s)

    @property
    def worker(self) -> str:
        # Read each time: a service forked into workers after this object was made.
        return str(os.getpid())

    def request(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, endpoint, status)] += 1
            self.latency.setdefault(endpoint, Histogram()).observe(seconds)

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def events(self, accepted: int, rejected_keys: list[tuple[str, ...]]) -> None:
        """One posted batch: how many events were taken, and each refused one's rule keys."""
        with self._lock:
            self.events_accepted += accepted
            self.events_refused += len(rejected_keys)
            for keys in rejected_keys:
                self.events_rejected.update(keys)

    def summary(self) -> dict:
        """The counts /healthz shows."""
        with self._lock:
            return {
                "events_accepted": self.events_accepted,
                "events_rejected": self.events_refused,
                "events_rejected_by_rule": dict(self.events_rejected),
                "requests_rejected": dict(self.rejected),
                "queue_depth": self.queue_depth,
                "service_ms": round(self.service_s * 1000.0, 3),
            }

    def render(self) -> str:
        with self._lock:
            lines = self._counters() + self._histograms()
        return "\n".join(lines) + "\n"

    def _counters(self) -> list[str]:
        w = self.worker
        out = [
            "# HELP recsys_requests_total Requests answered, by endpoint and status.",
            "# TYPE recsys_requests_total counter",
        ]
        for (method, endpoint, status), n in sorted(self.requests.items()):
            labels = _labels(worker=w, method=method, endpoint=endpoint, status=str(status))
            out.append(f"recsys_requests_total{labels} {n}")
        out += [
            "# HELP recsys_rejected_total Requests refused before any work, by reason.",
            "# TYPE recsys_rejected_total counter",
        ]
        out += [
            f"recsys_rejected_total{_labels(worker=w, reason=r)} {n}"
            for r, n in sorted(self.rejected.items())
        ]
        out += [
            "# HELP recsys_events_accepted_total Posted events taken into session state.",
            "# TYPE recsys_events_accepted_total counter",
            f"recsys_events_accepted_total{_labels(worker=w)} {self.events_accepted}",
            "# HELP recsys_events_rejected_total Posted events refused, by rule (an event "
            "breaking several rules counts under each).",
            "# TYPE recsys_events_rejected_total counter",
        ]
        out += [
            f"recsys_events_rejected_total{_labels(worker=w, rule=r)} {n}"
            for r, n in sorted(self.events_rejected.items())
        ]
        out += [
            "# HELP recsys_queue_depth Requests admitted and not yet answered.",
            "# TYPE recsys_queue_depth gauge",
            f"recsys_queue_depth{_labels(worker=w)} {self.queue_depth}",
            "# HELP recsys_service_seconds Moving average of the worker's time per request.",
            "# TYPE recsys_service_seconds gauge",
            f"recsys_service_seconds{_labels(worker=w)} {self.service_s}",
        ]
        return out

    def _histograms(self) -> list[str]:
        out = [
            "# HELP recsys_request_seconds Time from a request's arrival to its answer.",
            "# TYPE recsys_request_seconds histogram",
        ]
        for endpoint, h in sorted(self.latency.items()):
            running = 0
            for bound, n in zip((*BUCKETS, "+Inf"), h.counts, strict=True):
                running += n
                le = bound if isinstance(bound, str) else repr(bound)
                labels = _labels(worker=self.worker, endpoint=endpoint, le=le)
                out.append(f"recsys_request_seconds_bucket{labels} {running}")
            labels = _labels(worker=self.worker, endpoint=endpoint)
            out.append(f"recsys_request_seconds_sum{labels} {h.sum}")
            out.append(f"recsys_request_seconds_count{labels} {h.count}")
        return out
