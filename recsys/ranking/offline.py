"""Session features for logged queries, point in time: what the live service would have seen.

``session_features_offline(events, queries)`` answers each query (user, ts, candidate) from the
events strictly before its ``ts``, through the same ``SessionStore`` update and the same
``session_features`` the live service uses. Events are replayed once in (ts, event_id) order
while the queries are answered in time order, so the cost is one pass over the events plus one
feature call per distinct (ts, user) among the queries, and no query can see an event stamped
at or after its own time.

The replay folds events one at a time in Python on purpose: the point is to run the online
update code itself, not a vectorised imitation of it that could drift.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.ranking.events import NO_ID, event_columns, id_column
from recsys.ranking.features import FEATURE_NAMES, KIND_NAMES, PRODUCT, ROOM, Candidates
from recsys.ranking.lookup import ItemLookup
from recsys.ranking.session import SessionConfig
from recsys.ranking.store import SessionStore

QUERY_COLUMNS = ("user_id", "ts", "kind")


def query_candidates(queries: pd.DataFrame) -> Candidates:
    """The candidate of each query row: ``kind`` 'room' or 'product' and its raw ids."""
    missing = [c for c in QUERY_COLUMNS if c not in queries.columns]
    if missing:
        raise ValueError(f"queries: missing columns {missing}")
    kind = queries["kind"].map(KIND_NAMES)
    if kind.isna().any():
        i = int(np.flatnonzero(kind.isna().to_numpy())[0])
        raise ValueError(
            f"queries row {i}: kind {queries['kind'].iloc[i]!r} is not one of {list(KIND_NAMES)}"
        )
    c = Candidates(
        kind=kind.to_numpy(np.int64),
        streamer=id_column(queries, "streamer_id"),
        session=id_column(queries, "session_id"),
        product=id_column(queries, "product_id"),
    )
    for code, field, ids in ((ROOM, "streamer_id", c.streamer), (PRODUCT, "product_id", c.product)):
        bad = np.flatnonzero((c.kind == code) & (ids == NO_ID))
        if len(bad):
            raise ValueError(
                f"queries row {bad[0]}: a {queries['kind'].iloc[bad[0]]} query needs {field!r}"
            )
    return c


def _groups(user: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Query order by (ts, user) and the start of each run of equal (ts, user)."""
    order = np.lexsort((np.arange(len(ts)), user, ts))
    u, t = user[order], ts[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (u[1:] != u[:-1]) | (t[1:] != t[:-1])
    return order, np.append(np.flatnonzero(new), len(order))


def session_features_offline(
    events: pd.DataFrame,
    queries: pd.DataFrame,
    *,
    lookup: ItemLookup,
    config: SessionConfig | None = None,
) -> pd.DataFrame:
    """(len(queries), len(FEATURE_NAMES)) features, indexed like ``queries``.

    ``queries`` has ``user_id``, ``ts``, ``kind`` ('room' | 'product') and, as the kind needs,
    ``streamer_id`` / ``session_id`` / ``product_id`` (raw ids; missing = unknown). Each row
    sees only the events with ``ts`` strictly before its own.
    """
    candidates = query_candidates(queries)
    columns = event_columns(events)
    store = SessionStore(lookup=lookup, config=config)
    user = queries["user_id"].to_numpy(np.int64)
    ts = queries["ts"].to_numpy(np.int64)
    order, starts = _groups(user, ts)
    first = order[starts[:-1]]
    bounds = np.searchsorted(columns.ts, ts[first], side="left")  # events before each group
    out = np.zeros((len(queries), len(FEATURE_NAMES)), dtype=np.float64)
    done = 0
    for g, row in enumerate(first.tolist()):
        store.replay(columns, done, int(bounds[g]))
        done = int(bounds[g])  # groups run in time order, so bounds never decrease
        rows = order[starts[g] : starts[g + 1]]
        out[rows] = store.features(int(user[row]), candidates.take(rows), int(ts[row]))
    return pd.DataFrame(out, columns=list(FEATURE_NAMES), index=queries.index)
