"""Wall time and peak resident memory of a block of work, for benchmark tables."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

_STATUS = Path("/proc/self/status")


def current_rss_mb() -> float:
    """Resident set size of this process in MiB (0 where /proc is unavailable)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


@dataclass
class Measured:
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    start_rss_mb: float = 0.0

    @property
    def peak_delta_mb(self) -> float:
        return max(self.peak_rss_mb - self.start_rss_mb, 0.0)


class measure:
    """Context manager sampling RSS in a background thread while the block runs.

    The process-wide high-water mark (ru_maxrss) never falls, so it cannot attribute memory
    to one model among several run in the same process; sampling can.
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.result = Measured()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.result.peak_rss_mb = max(self.result.peak_rss_mb, current_rss_mb())

    def __enter__(self) -> Measured:
        self.result.start_rss_mb = self.result.peak_rss_mb = current_rss_mb()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self.result

    def __exit__(self, *exc) -> None:
        self.result.seconds = time.perf_counter() - self._t0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.result.peak_rss_mb = max(self.result.peak_rss_mb, current_rss_mb())
