"""``RedisEventLog``: the shared event log of several service workers in one Redis list.

The only module that imports ``redis`` (redis-py). One list element per posted batch
(``recsys.serving.state.encode_batch``), appended with ``RPUSH`` (atomic: batches from
different workers get one total order), read from the reader's cursor with ``LRANGE``, one
round trip per request. An append returns once Redis holds the batch; how long Redis keeps
it across its own restarts is Redis's persistence setting (``appendonly``).

The list is never trimmed while the service runs: a worker started later must replay it from
the start. It grows by ~60 bytes per event (about 100 MB per 1.7M events).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from recsys.ranking.events import SessionEvent
from recsys.serving.state import EventLog, decode_batch, encode_batch


class RedisEventLog(EventLog):
    def __init__(self, *, url: str, key: str = "recsys:serve:events", timeout_s: float = 2.0):
        self.url, self.key = url, key
        # Connections are made on first use and per process (redis-py resets its pool in a
        # forked child), so a service built before forking into workers is safe.
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._cursor = 0

    def append(self, events: Sequence[SessionEvent]) -> None:
        if events:
            self._client.rpush(self.key, encode_batch(events))

    def read_new(self) -> list[SessionEvent]:
        batches = self._client.lrange(self.key, self._cursor, -1)
        self._cursor += len(batches)
        return [e for data in batches for e in decode_batch(data)]

    def reset(self) -> None:
        self._client.delete(self.key)
        self._cursor = 0

    def length(self) -> int:
        """Batches in the log."""
        return int(self._client.llen(self.key))

    def describe(self) -> dict:
        return {"state": "redis", "state_key": self.key, "log_batches_read": self._cursor}
