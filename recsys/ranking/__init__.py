"""Ranking with real-time session signals.

Session state per viewer (``session``, ``store``), the features a ranker reads from it
(``features``), and the same features computed point in time from logged events (``offline``)::

    from recsys.ranking import Candidates, ItemLookup, SessionEvent, SessionStore

    lookup = ItemLookup.from_tables(tables.products, tables.streamers)
    store = SessionStore(lookup=lookup)
    store.update(SessionEvent(ts=t, user=u, event_type="enter", session=s, streamer=r))
    x = store.features(u, Candidates.products([p1, p2], streamer=[r, r]), now=t + 60)

    from recsys.ranking import session_features_offline
    frame = session_features_offline(tables.events, queries, lookup=lookup)
"""

from recsys.ranking.events import EVENT_CODE, NO_ID, EventColumns, SessionEvent, event_columns
from recsys.ranking.features import (
    FEATURE_INDEX,
    FEATURE_NAMES,
    PRODUCT,
    ROOM,
    Candidates,
    session_features,
)
from recsys.ranking.lookup import UNKNOWN, ItemLookup
from recsys.ranking.offline import query_candidates, session_features_offline
from recsys.ranking.session import AFFINITY_WEIGHT, SessionConfig, SessionState
from recsys.ranking.store import SNAPSHOT_VERSION, SessionStore

__all__ = [
    "AFFINITY_WEIGHT",
    "EVENT_CODE",
    "FEATURE_INDEX",
    "FEATURE_NAMES",
    "NO_ID",
    "PRODUCT",
    "ROOM",
    "SNAPSHOT_VERSION",
    "UNKNOWN",
    "Candidates",
    "EventColumns",
    "ItemLookup",
    "SessionConfig",
    "SessionEvent",
    "SessionState",
    "SessionStore",
    "event_columns",
    "query_candidates",
    "session_features",
    "session_features_offline",
]
