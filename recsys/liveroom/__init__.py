"""In the live room: real-time room metrics, repeated-question clusters, host triggers.

::

    from recsys.liveroom import LiveRooms, attach_live_rooms
    from recsys.liveroom.events import from_records

    rooms = LiveRooms()                       # the in-process RoomStore
    rooms.ingest_records([{"event_id": 1, "ts": 1717400000, "session_id": 7, "user_id": 3,
                           "event_type": "enter"}])
    rooms.snapshot(7)                         # 1/5/15-minute windows, questions, suggestions
    attach_live_rooms(app, rooms)             # /live pages, JSON and event streams

``RoomAggregator`` keeps sliding 1, 5 and 15-minute windows per live room over a stream of
event batches (``events.py`` parses and checks them, ``table.py`` folds them), exactly equal
to ``batch_snapshot``'s recompute; ``QuestionClusterer`` groups the audience's questions
online; ``RoomTriggers`` suggests actions to the host; ``LiveRooms`` puts them behind the
``RoomStore`` interface that the dashboard (``http.py``) reads; ``replay.py`` feeds a
simulated day to a store or a service and ``evaluation.py`` scores questions and triggers
against the simulator's planted truth.
"""

from recsys.liveroom.aggregator import AggregatorConfig, IngestReport, RoomAggregator
from recsys.liveroom.batch import batch_snapshot
from recsys.liveroom.http import attach_live_rooms
from recsys.liveroom.questions import ClusterConfig, QuestionClusterer, is_question
from recsys.liveroom.rooms import LiveRooms, LiveRoomsConfig, RoomStore
from recsys.liveroom.triggers import RoomTriggers, Suggestion, TriggerConfig

__all__ = [
    "AggregatorConfig",
    "ClusterConfig",
    "IngestReport",
    "LiveRooms",
    "LiveRoomsConfig",
    "QuestionClusterer",
    "RoomAggregator",
    "RoomStore",
    "RoomTriggers",
    "Suggestion",
    "TriggerConfig",
    "attach_live_rooms",
    "batch_snapshot",
    "is_question",
]
