"""The live rooms behind one interface: windows, question clusters and suggestions.

``RoomStore`` is what the HTTP service and the replay talk to; ``LiveRooms`` is the default,
in-process store. Each ``ingest`` folds a batch into the aggregator, clusters the accepted
comments that are questions, judges every minute that closed, and bumps ``version`` so the
dashboard's event stream knows there is something new. Everything a store holds per room is
bounded (ring of minutes, ``max_questions`` recent questions, ``max_suggestions``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from recsys.liveroom.aggregator import AggregatorConfig, IngestReport, RoomAggregator
from recsys.liveroom.events import KIND_CODE, Columns, from_records
from recsys.liveroom.questions import ClusterConfig, QuestionClusterer, is_question
from recsys.liveroom.triggers import RoomTriggers, Suggestion, TriggerConfig, closed_through

log = logging.getLogger(__name__)
COMMENT = KIND_CODE["comment"]
SLACK_S = 3600  # how far out of time order a room's questions may arrive and still be scanned


class RoomStore(Protocol):
    """What the live-room routes ask of a store: ``LiveRooms``, or several workers'
    ``recsys.liveroom.shared.SharedLiveRooms``."""

    version: int

    def ingest_records(self, records: list[dict]) -> dict: ...

    def live(self) -> list[dict]: ...

    def snapshot(self, room: int) -> dict: ...

    def forget(self, users) -> dict[str, int]: ...


@dataclass(frozen=True)
class LiveRoomsConfig:
    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)
    clusters: ClusterConfig = field(default_factory=ClusterConfig)
    triggers: TriggerConfig = field(default_factory=TriggerConfig)
    max_questions: int = 5000  # recent questions kept per room
    max_suggestions: int = 100  # suggestions kept per room
    max_history: int = 100_000  # suggestions kept over all rooms, ended ones too
    top_questions: int = 5
    record_questions: bool = False  # keep (event id, cluster) of every question, for evaluation


class RoomQuestions:
    """Who asked what in one room: every asker per cluster, and the recent questions."""

    def __init__(self, keep: int) -> None:
        self.askers: dict[int, set[int]] = {}
        self.recent: deque[tuple[int, int, int]] = deque(maxlen=keep)  # (ts, user, cluster)

    def add(self, ts: int, user: int, cluster: int) -> None:
        self.askers.setdefault(cluster, set()).add(user)
        self.recent.append((ts, user, cluster))

    def forget(self, users: set[int]) -> int:
        """Drop ``users`` from the askers and the recent questions; returns questions dropped."""
        for askers in self.askers.values():
            askers -= users
        kept = [q for q in self.recent if q[1] not in users]
        dropped = len(self.recent) - len(kept)
        self.recent = deque(kept, maxlen=self.recent.maxlen)
        return dropped

    def top(self, clusterer: QuestionClusterer, n: int) -> list[tuple[int, int]]:
        """(cluster root, distinct askers), most asked first."""
        merged: dict[int, set[int]] = {}
        for c, users in self.askers.items():
            merged.setdefault(clusterer.root(c), set()).update(users)
        ranked = sorted(((r, len(u)) for r, u in merged.items()), key=lambda x: (-x[1], x[0]))
        return ranked[:n]

    def window(self, clusterer: QuestionClusterer, first_ts: int, end_ts: int) -> dict[int, int]:
        """Distinct askers per cluster root among questions asked in [first_ts, end_ts)."""
        users: dict[int, set[int]] = {}
        for ts, user, c in reversed(self.recent):
            if ts < first_ts - SLACK_S:
                break  # questions arrive about in time order; older ones cannot count
            if first_ts <= ts < end_ts:
                users.setdefault(clusterer.root(c), set()).add(user)
        return {c: len(u) for c, u in users.items()}


class LiveRooms:
    """The in-process ``RoomStore`` (see the module docstring)."""

    def __init__(self, config: LiveRoomsConfig = LiveRoomsConfig()) -> None:
        self.config = config
        self.aggregator = RoomAggregator(config.aggregator)
        self.clusterer = QuestionClusterer(config.clusters)
        self.questions: dict[int, RoomQuestions] = {}
        self.triggers: dict[int, RoomTriggers] = {}
        self.suggested: dict[int, deque[Suggestion]] = {}
        self.history: deque[Suggestion] = deque(maxlen=config.max_history)
        self.assigned: list[tuple[int, int]] = []  # (event id, cluster) if record_questions
        self.totals = IngestReport()
        self.unjudged_minutes = 0
        self.version = 0
        # (product, now) -> the coupon model's word on a limited-time offer, where one is served.
        self.offer: Callable[[int, int], str] | None = None

    def forget(self, users) -> dict[str, int]:
        """Forget ``users`` as askers of every room's questions (the only per-viewer state the
        rooms keep: counts are not per viewer); returns the questions dropped."""
        gone = {int(u) for u in users}
        self.version += 1
        return {"live_questions": sum(q.forget(gone) for q in self.questions.values())}

    def ingest_records(self, records: list[dict]) -> dict:
        parsed = from_records(records)
        report = self.ingest(parsed.columns)
        report.rejected += len(parsed.rejects)
        self.totals.rejected += len(parsed.rejects)
        return {**report.as_dict(), "errors": [r.message() for r in parsed.rejects[:20]]}

    def ingest(self, events: Columns) -> IngestReport:
        report, accepted = self.aggregator.ingest(events)
        self._questions(accepted)
        for room in set(accepted.room.tolist()) & self.aggregator.rooms.keys():
            self._judge(room)
        for room in [r for r in self.triggers if r not in self.aggregator.rooms]:
            for held in (self.questions, self.triggers, self.suggested):
                held.pop(room, None)
        self.totals += report
        self.version += 1
        return report

    def _questions(self, ev: Columns) -> None:
        for i in (ev.kind == COMMENT).nonzero()[0].tolist():
            text = ev.text[i]
            if text and is_question(text):
                cluster = self.clusterer.add(text)
                if self.config.record_questions:
                    self.assigned.append((int(ev.event_id[i]), cluster))
                if cluster >= 0:
                    room = int(ev.room[i])
                    if room not in self.questions:
                        self.questions[room] = RoomQuestions(self.config.max_questions)
                    self.questions[room].add(int(ev.ts[i]), int(ev.user[i]), cluster)

    def _judge(self, room: int) -> None:
        state = self.aggregator.rooms[room]
        judge = self.triggers.setdefault(room, RoomTriggers(self.config.triggers))
        last = closed_through(state, self.config.aggregator.lateness_s)
        first = max(judge.judged + 1, last - self.config.aggregator.slots + 3)
        if judge.judged >= 0 and first > judge.judged + 1:
            # The batch spanned more minutes than the ring holds: those are gone unjudged.
            self.unjudged_minutes += first - judge.judged - 1
        asked = self.questions.get(room)
        for minute in range(first, last + 1):
            window = self._asked(asked, (minute + 1) * 60)
            for s in judge.judge(state, minute, window, self.clusterer.name):
                if s.kind == "spike" and self.offer is not None:
                    s = replace(s, action=f"{s.action}: {self.offer(s.product, s.ts)}")
                log.info("room %d suggestion %s: %s (%s)", room, s.kind, s.action, s.reason)
                self.suggested.setdefault(room, deque(maxlen=self.config.max_suggestions)).append(s)
                self.history.append(s)
        judge.judged = max(judge.judged, last)

    def _asked(self, asked: RoomQuestions | None, end: int) -> dict[int, tuple[int, float]]:
        """cluster -> (askers in the burst window ending at ``end``, askers expected in it)."""
        if asked is None:
            return {}
        config = self.config.triggers
        span, base = 60 * config.burst_minutes, 60 * config.base_minutes
        now = asked.window(self.clusterer, end - span, end)
        before = asked.window(self.clusterer, end - span - base, end - span)
        return {c: (n, before.get(c, 0) * span / base) for c, n in now.items()}

    def live(self) -> list[dict]:
        out = []
        for room in self.aggregator.live_rooms():
            state = self.aggregator.rooms[room]
            online = max(state.online_at(state.watermark // 60), 0.0)
            out.append({"room": room, "online": online, "watermark": state.watermark})
        return out

    def snapshot(self, room: int) -> dict:
        """The room's windows, top question clusters and suggestions; KeyError if not live."""
        snap = self.aggregator.snapshot(room)
        asked = self.questions.get(room)
        top = asked.top(self.clusterer, self.config.top_questions) if asked else []
        snap["questions"] = [
            {"cluster": c, "question": self.clusterer.name(c), "askers": n} for c, n in top
        ]
        snap["suggestions"] = [s.as_dict() for s in self.suggested.get(room, ())][::-1]
        snap["version"] = self.version
        return snap
