"""Admission control: refuse early and cheaply what the service cannot answer in time.

``AdmissionMiddleware`` wraps the whole ASGI app, so its refusals cost no parsing and no
recommender work:

- a body declared (``Content-Length``) larger than ``max_body_bytes`` is answered 413 before a
  byte of it is read, and the connection is closed; a body without a declared length is
  counted as it streams in and refused the moment it passes the limit;
- beyond ``max_in_flight`` admitted and unanswered requests to the worker's endpoints
  (``/recommend``, ``/events``), or once the wait they imply (requests ahead times the recent
  time the worker takes per request, ``Metrics.service_s``) passes ``max_wait_ms``, a new one
  gets 429 with ``Retry-After`` at once: a queue that only grows under overload answers
  everyone late, a bounded one answers most on time. Bounding the wait rather than only the
  count keeps admitted latency when each request gets slower (a busy machine, a bigger
  catalogue) without retuning;
- every request records its arrival time; work that reaches the worker after ``deadline_ms``
  is skipped and answered 503 with ``Retry-After`` (``DeadlineExceeded``), since its client
  has most likely given up.

Each request is counted in ``Metrics`` by endpoint (route template, so label values stay few)
and status, with its latency from arrival to the last byte of the answer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from recsys.serving.metrics import Metrics


@dataclass(frozen=True)
class AdmissionConfig:
    max_in_flight: int = 8  # per worker process: admitted requests not yet answered
    max_wait_ms: float = 40.0  # expected queueing beyond this: 429
    deadline_ms: float = 250.0  # queueing beyond this: the request is answered without work
    max_body_bytes: int = 2 * 1024 * 1024  # 10,000 events at ~200 bytes each fit
    retry_after_s: int = 1
    guarded: tuple[str, ...] = ("/recommend", "/events")  # paths that queue for the worker

    def __post_init__(self) -> None:
        limits = ("max_in_flight", "max_wait_ms", "deadline_ms", "max_body_bytes", "retry_after_s")
        for name in limits:
            if not getattr(self, name) > 0:
                raise ValueError(f"AdmissionConfig.{name} must be > 0, got {getattr(self, name)}")


class DeadlineExceeded(Exception):
    """A request waited longer than its deadline before the worker reached it."""

    def __init__(self, waited_s: float) -> None:
        super().__init__(f"waited {waited_s * 1000:.0f} ms for the worker")
        self.waited_s = waited_s


def arrival(scope: dict) -> float:
    """``time.perf_counter()`` when the middleware saw the request (now, when it did not)."""
    return scope.get("state", {}).get("arrived", time.perf_counter())


def _declared_length(scope: dict) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _answer(send, status: int, error: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": error}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class AdmissionMiddleware:
    """Pure ASGI middleware applying an ``AdmissionConfig`` and counting into ``Metrics``."""

    def __init__(self, app, *, config: AdmissionConfig, metrics: Metrics) -> None:
        self.app, self.config, self.metrics = app, config, metrics
        self.in_flight = 0
        self.retry = {"retry-after": str(config.retry_after_s)}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = time.perf_counter()
        scope.setdefault("state", {})["arrived"] = arrived
        outcome = {"status": 500, "sent": False}

        async def tracked_send(message) -> None:
            if outcome["sent"]:  # the limit already answered: drop the app's own reply
                return
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
            await send(message)

        await self._admit(scope, receive, send, tracked_send, outcome)
        endpoint = getattr(scope.get("route"), "path", None) or "other"
        seconds = time.perf_counter() - arrived
        self.metrics.request(scope["method"], endpoint, outcome["status"], seconds)

    async def _admit(self, scope, receive, send, tracked_send, outcome) -> None:
        declared = _declared_length(scope)
        if declared is not None and declared > self.config.max_body_bytes:
            outcome["status"] = 413
            self.metrics.reject("body_too_large")
            await _answer(send, 413, self._too_large(declared), {"connection": "close"})
            return
        guarded = scope["path"] in self.config.guarded
        if guarded and self._full():
            outcome["status"] = 429
            self.metrics.reject("queue_full")
            await _answer(send, 429, "overloaded: try again later", self.retry)
            return
        if guarded:
            self.in_flight += 1
            self.metrics.queue_depth = self.in_flight
        try:
            await self.app(scope, self._limited(receive, send, outcome), tracked_send)
        finally:
            if guarded:
                self.in_flight -= 1
                self.metrics.queue_depth = self.in_flight

    def _full(self) -> bool:
        if self.in_flight >= self.config.max_in_flight:
            return True
        return self.in_flight * self.metrics.service_s * 1000.0 > self.config.max_wait_ms

    def _limited(self, receive, send, outcome):
        """``receive`` that refuses a body growing past the limit, without reading further."""
        limit, seen = self.config.max_body_bytes, [0]

        async def receive_limited():
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit and not outcome["sent"]:
                    self.metrics.reject("body_too_large")
                    await _answer(send, 413, self._too_large(None), {"connection": "close"})
                    outcome.update(status=413, sent=True)
                    return {"type": "http.disconnect"}
            return message

        return receive_limited

    def _too_large(self, declared: int | None) -> str:
        size = "" if declared is None else f" ({declared} bytes)"
        return f"request body too large{size}: the limit is {self.config.max_body_bytes} bytes"
