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

Ranking candidates (``candidate_features``, ``ranker``, ``reasons``)::

    featurizer = CandidateFeaturizer(tables)
    features = featurizer.transform(candidates.assign(user_id=..., ts=...))
    top = Ranker.blended().rank(requests, candidates, features)   # or Ranker.learned(...)

``fit_esmm`` / ``ImpressionDataset`` (``esmm_training``, needs torch) load on first use.
"""

from recsys.ranking.candidate_features import (
    CandidateFeatureConfig,
    CandidateFeaturizer,
    FeatureMatrix,
)
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
from recsys.ranking.ranker import BlendWeights, Ranker, rank_live, retrieve_live
from recsys.ranking.reasons import REASON_CODES, ReasonRule, ReasonRules
from recsys.ranking.session import AFFINITY_WEIGHT, SessionConfig, SessionState
from recsys.ranking.store import SNAPSHOT_VERSION, SessionStore

_LAZY = ("ImpressionBatch", "ImpressionDataset", "esmm_metrics", "esmm_settings", "fit_esmm")

__all__ = [
    "AFFINITY_WEIGHT",
    "BlendWeights",
    "CandidateFeatureConfig",
    "CandidateFeaturizer",
    "FeatureMatrix",
    "REASON_CODES",
    "Ranker",
    "ReasonRule",
    "ReasonRules",
    *_LAZY,
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
    "rank_live",
    "retrieve_live",
    "query_candidates",
    "session_features",
    "session_features_offline",
]


def __getattr__(name: str):
    if name in _LAZY:
        # Lazy: the session store and features run without torch; ESMM training needs it.
        from recsys.ranking import esmm_training

        return getattr(esmm_training, name)
    raise AttributeError(f"module 'recsys.ranking' has no attribute {name!r}")
