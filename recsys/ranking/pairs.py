"""Candidate pairs as plain arrays, and exact id -> position look-ups, for the request path.

The live service featurizes one request's few hundred to a few thousand (viewer, product)
pairs per HTTP request within a few milliseconds. A ``pd.DataFrame`` per request and nullable
id casts cost more than the features themselves at that size, so
``CandidateFeaturizer.transform`` works on ``Pairs`` (numpy arrays) and ``IdIndex``; a frame of
pairs, as offline jobs hold them, converts once with ``Pairs.from_frame``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.data.positions import IdPositions
from recsys.ranking.events import id_column

PAIR_COLUMNS = ("user_id", "ts", "product_id", "streamer_id", "session_id")
SCORE_COLUMNS = ("retrieval_score", "sequential_score")


class IdIndex:
    """Exact int64 id -> position in the array it was built from; -1 for an unknown id."""

    __slots__ = ("_positions", "_n")

    def __init__(self, ids: np.ndarray, *, table: str, field: str) -> None:
        index = pd.Index(np.asarray(ids, dtype=np.int64))
        if not index.is_unique:  # a repeated id would map to one of its rows only
            dup = index[index.duplicated()][0]
            raise ValueError(f"table {table!r}: field {field!r} repeats id {dup}")
        self._positions, self._n = IdPositions(index.to_numpy()), len(index)

    def __len__(self) -> int:
        return self._n

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """(n,) int64 position of each id, -1 where unknown."""
        return self._positions.of(ids)

    def positions_of_one(self, ids: np.ndarray) -> np.ndarray:
        """``positions`` for ids that usually all repeat one id (one viewer per request): one
        look-up then instead of one per pair."""
        if len(ids) and ids[0] == ids[-1] and np.all(ids == ids[0]):
            return np.full(len(ids), self.positions(ids[:1])[0], dtype=np.int64)
        return self.positions(ids)


@dataclass(frozen=True)
class Pairs:
    """(viewer at a time, candidate product in a room) pairs; all arrays (n,).

    Ids are int64 with ``NO_ID`` (-1) where unknown; scores float64 with NaN where unknown,
    ``None`` where the upstream model did not score the pairs at all.
    """

    user_id: np.ndarray
    ts: np.ndarray
    product_id: np.ndarray
    streamer_id: np.ndarray
    session_id: np.ndarray
    retrieval_score: np.ndarray | None = None
    sequential_score: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.user_id)
        for name in (*PAIR_COLUMNS, *SCORE_COLUMNS):
            values = getattr(self, name)
            if values is None:
                continue
            dtype = np.float64 if name in SCORE_COLUMNS else np.int64
            values = np.asarray(values, dtype=dtype)
            if values.shape != (n,):
                raise ValueError(f"candidate pairs: {name} has shape {values.shape}, not ({n},)")
            object.__setattr__(self, name, values)

    def __len__(self) -> int:
        return len(self.user_id)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Pairs:
        """Pairs of a frame's rows (``PAIR_COLUMNS``, optionally the score columns)."""
        missing = [name for name in PAIR_COLUMNS if name not in frame.columns]
        if missing:
            raise ValueError(f"candidate pairs: missing columns {missing}")
        scores = {
            name: frame[name].to_numpy(np.float64) if name in frame.columns else None
            for name in SCORE_COLUMNS
        }
        return cls(
            user_id=frame["user_id"].to_numpy(np.int64),
            ts=frame["ts"].to_numpy(np.int64),
            product_id=id_column(frame, "product_id"),
            streamer_id=id_column(frame, "streamer_id"),
            session_id=id_column(frame, "session_id"),
            **scores,
        )

    @classmethod
    def of_request(
        cls,
        user: int,
        ts: int,
        product_id: np.ndarray,
        streamer_id: np.ndarray,
        session_id: np.ndarray,
        retrieval_score: np.ndarray | None = None,
        sequential_score: np.ndarray | None = None,
    ) -> Pairs:
        """One viewer's candidates at one time: ``user`` and ``ts`` hold for every pair."""
        n = len(product_id)
        return cls(
            user_id=np.full(n, user, dtype=np.int64),
            ts=np.full(n, ts, dtype=np.int64),
            product_id=product_id,
            streamer_id=streamer_id,
            session_id=session_id,
            retrieval_score=retrieval_score,
            sequential_score=sequential_score,
        )

    def frame(self) -> pd.DataFrame:
        """The pairs as a frame (``PAIR_COLUMNS``, then the scores present), for offline code."""
        columns = (*PAIR_COLUMNS, *SCORE_COLUMNS)
        return pd.DataFrame(
            {name: getattr(self, name) for name in columns if getattr(self, name) is not None}
        )
