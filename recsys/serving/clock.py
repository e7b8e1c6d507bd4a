"""Where "now" comes from: the wall clock, a fixed time (tests), or a replayed world's time.

A synthetic world lives in the past, so serving it needs a clock that starts at a moment of the
world (e.g. the last logged event) and runs forward from there, ``speed`` times real time.
"""

from __future__ import annotations

import threading
import time


class WallClock:
    def __call__(self) -> int:
        return int(time.time())


class FixedClock:
    """A clock that only moves when told to; thread-safe."""

    def __init__(self, ts: int) -> None:
        self._ts = int(ts)
        self._lock = threading.Lock()

    def __call__(self) -> int:
        return self._ts

    def set(self, ts: int) -> None:
        with self._lock:
            self._ts = int(ts)

    def advance(self, seconds: int) -> None:
        with self._lock:
            self._ts += int(seconds)


class ReplayClock:
    """``start`` at construction, then ``speed`` simulated seconds per real second."""

    def __init__(self, start: int, speed: float = 1.0) -> None:
        if speed < 0:
            raise ValueError(f"ReplayClock: speed must be >= 0, got {speed}")
        self.start, self.speed = int(start), float(speed)
        self._began = time.monotonic()

    def __call__(self) -> int:
        return self.start + int((time.monotonic() - self._began) * self.speed)
