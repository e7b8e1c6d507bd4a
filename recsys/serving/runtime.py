"""What every route of the service shares: the recommender, its worker thread, clock and checks.

``create_app`` puts one ``ServiceContext`` on ``app.state.ctx``; a route (the core ones in
``recsys.serving.routes``, or any router another package includes) reads it from
``request.app.state.ctx`` and runs recommender work through ``ctx.run``, which keeps the
one-at-a-time worker, the admission deadline and the ingestion checks in one place.

Recommendations and event ingestion run one at a time on one worker thread, in arrival order,
while the event loop parses, validates and answers. The work is Python and numpy under one
interpreter lock: requests run side by side on a thread pool only take turns on it, and
under load their switching (plus the math libraries' own threads) costs more CPU than the
requests themselves. More cores are used by more processes (``recsys.serving.workers``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fastapi import Request

from recsys.data.validation.online import CheckResult, OnlineEventChecker
from recsys.privacy.pii import scrub_comments
from recsys.ranking.events import SessionEvent
from recsys.serving.admission import AdmissionConfig, DeadlineExceeded, arrival
from recsys.serving.metrics import Metrics
from recsys.serving.protocol import RecommenderService


@dataclass
class ServiceContext:
    recommender: RecommenderService
    clock: Callable[[], int]
    checker: OnlineEventChecker | None  # None: posted events are only typed (no tables)
    admission: AdmissionConfig
    metrics: Metrics = field(default_factory=Metrics)
    worker_init: Callable[[], None] | None = None
    _worker: ThreadPoolExecutor | None = None

    @property
    def worker(self) -> ThreadPoolExecutor:
        # Made on first use: a service forked into worker processes must not hold a thread
        # across the fork.
        if self._worker is None:
            self._worker = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="recommender", initializer=self.worker_init
            )
        return self._worker

    def shutdown(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True)

    async def run(self, request: Request, fn: Callable, *args):
        """``fn(*args)`` on the worker thread, unless the request's deadline passed first."""
        arrived = arrival(request.scope)
        deadline = self.admission.deadline_ms / 1000.0

        def within_deadline():
            began = time.perf_counter()
            if began - arrived > deadline:
                raise DeadlineExceeded(began - arrived)
            try:
                return fn(*args)
            finally:
                self.metrics.served(time.perf_counter() - began)

        return await asyncio.get_running_loop().run_in_executor(self.worker, within_deadline)

    def ingest(self, records: Sequence[dict], now: int) -> CheckResult:
        """Check a posted batch, apply what passes (on the worker thread), count both. Comment
        text is stripped of PII (``recsys.privacy.pii``) before anything reads it."""
        records = scrub_comments(records)
        if self.checker is None:
            result = CheckResult(accepted=list(records), rejected=[])
        else:
            result = self.checker.check(records, now)
        events = [SessionEvent.from_record(r) for r in result.accepted]
        if events:
            self.recommender.ingest(events)
        self.metrics.events(len(events), [r.keys for r in result.rejected])
        return result
