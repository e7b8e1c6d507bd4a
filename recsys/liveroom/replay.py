"""Replay a simulated live-room day into a store or a running service at N x speed.

``replay_frame(day)`` is the day as the service would receive it: the events plus one
``present`` row per showcase segment (the product put on show), in time order.
``replay(frame, send, speed=60)`` sends it in ticks: every ``tick_s`` of wall time, the events
of the next ``tick_s * speed`` seconds of event time, so at 60x an hour of live passes in a
minute (``speed=0``: as fast as ``send`` allows, ``FAST_TICK_S`` of event time a batch, so
every minute of every room is still judged by the triggers). ``send`` takes a list of JSON
event objects and returns the service's answer (the ingest report).
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from tqdm import tqdm

from recsys.simulation.live_room import LiveRoomDay

log = logging.getLogger(__name__)
PRESENT_ID_BASE = 1 << 50  # ids of present rows: apart from world and planted event ids
FAST_TICK_S = 60.0  # event time per batch when replaying as fast as possible
FIELDS = (
    "event_id",
    "ts",
    "session_id",
    "user_id",
    "event_type",
    "product_id",
    "amount",
    "dwell_s",
    "comment",
)


def replay_frame(day: LiveRoomDay) -> pd.DataFrame:
    shows = day.showcase.rename(columns={"start_ts": "ts"}).assign(event_type="present", user_id=0)
    position = shows.groupby("session_id").cumcount().to_numpy(np.int64)
    shows["event_id"] = PRESENT_ID_BASE + shows["session_id"].to_numpy(np.int64) * 10**6 + position
    shows = shows[["event_id", "ts", "session_id", "user_id", "event_type", "product_id"]]
    frame = pd.concat(
        [day.events, shows.astype({"session_id": "Int64", "product_id": "Int64"})],
        ignore_index=True,
    )
    return frame.sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)


def to_records(frame: pd.DataFrame) -> list[dict]:
    """JSON event objects; missing fields left out."""
    cols = [c for c in FIELDS if c in frame]
    out = []
    for row in frame[cols].itertuples(index=False, name=None):
        rec = {}
        for name, value in zip(cols, row, strict=True):
            if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                continue
            rec[name] = value.item() if hasattr(value, "item") else value
        out.append(rec)
    return out


def ticks(ts: np.ndarray, step: float) -> list[tuple[int, int]]:
    """[lo, hi) row ranges of ``step`` seconds of event time each (``ts`` sorted), none empty."""
    if not len(ts):
        return []
    cuts = np.searchsorted(ts, np.arange(ts[0], ts[-1] + step, step), side="left")[1:]
    bounds = np.unique(np.concatenate([[0], cuts, [len(ts)]]))
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@dataclass
class ReplayResult:
    events: int = 0
    batches: int = 0
    seconds: float = 0.0
    totals: dict = field(default_factory=dict)
    sent: list[tuple[float, int, int]] = field(default_factory=list)  # (wall, first row, end row)


def replay(
    frame: pd.DataFrame,
    send: Callable[[list[dict]], dict],
    *,
    speed: float = 60.0,
    tick_s: float = 0.25,
    progress: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayResult:
    """Send ``frame`` tick by tick (see the module docstring); returns what was sent when."""
    if speed < 0 or tick_s <= 0:
        raise ValueError(f"replay needs speed >= 0 and tick_s > 0, got {speed}, {tick_s}")
    step = tick_s * speed if speed else FAST_TICK_S
    records = to_records(frame)
    result, began = ReplayResult(), clock()
    for k, (lo, hi) in enumerate(
        tqdm(ticks(frame["ts"].to_numpy(), step), disable=not progress, desc="replay", unit="tick")
    ):
        if speed:
            wait = began + k * tick_s - clock()
            if wait > 0:
                sleep(wait)
        result.sent.append((clock(), int(lo), int(hi)))
        answer = send(records[lo:hi])
        for key, value in answer.items():
            if isinstance(value, int):
                result.totals[key] = result.totals.get(key, 0) + value
        result.events += int(hi - lo)
        result.batches += 1
    result.seconds = clock() - began
    log.info(
        "replayed %d events in %d batches in %.1f s", result.events, result.batches, result.seconds
    )
    return result


def http_sender(
    url: str, *, timeout_s: float = 30.0, token: str | None = None
) -> Callable[[list[dict]], dict]:
    """``send`` for ``replay``: POST each batch to ``<url>/live/events`` on one kept-alive
    connection (with ``token`` as its bearer token, for a locked service: ``ingest`` scope);
    an answer other than 200 raises with the service's message."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"replay: url {url!r}: expected http://host:port")
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout_s)
    path = parts.path.rstrip("/") + "/live/events"
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"

    def send(events: list[dict]) -> dict:
        body = json.dumps({"events": events}, ensure_ascii=False).encode()
        conn.request("POST", path, body=body, headers=headers)
        answer = conn.getresponse()
        text = answer.read().decode()
        if answer.status != 200:
            raise RuntimeError(f"replay: POST {url}{path} answered {answer.status}: {text[:500]}")
        return json.loads(text)

    return send
