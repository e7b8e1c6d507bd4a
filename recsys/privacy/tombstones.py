"""Tombstones: the users a folder has forgotten, so nothing brings them back.

``recsys-forget`` removes users from every artifact of a folder and writes their ids (as the
tables hold them: pseudonyms after ingestion) to ``tombstones.parquet`` in it (``user_id``,
``forgotten_ts``). Readers honour the list: ``recsys-ingest`` drops the rows of a tombstoned
viewer when old raw files are ingested again (counted, as ``tombstoned``), and
``recsys.data.tables.load_tables`` (what training, evaluation and serving read) leaves their
rows out of a world that still holds some. The list keeps only the pseudonym, the least a
suppression list can hold; ``recsys-audit`` reads it to look for them everywhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

TOMBSTONE_FILE = "tombstones.parquet"


class Tombstones:
    """A sorted set of forgotten user ids."""

    def __init__(self, user_ids=(), forgotten_ts=None) -> None:
        ids = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        ts = np.zeros(len(ids), np.int64) if forgotten_ts is None else np.asarray(forgotten_ts)
        frame = pd.DataFrame({"user_id": ids, "forgotten_ts": ts.astype(np.int64)})
        frame = frame.sort_values(["user_id", "forgotten_ts"]).drop_duplicates("user_id")
        self.frame = frame.reset_index(drop=True)
        self.ids = self.frame["user_id"].to_numpy(np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, user_id: int) -> bool:
        i = np.searchsorted(self.ids, user_id)
        return bool(i < len(self.ids) and self.ids[i] == user_id)

    def mask(self, user_ids) -> np.ndarray:
        """(n,) bool: which of ``user_ids`` are tombstoned."""
        return np.isin(np.asarray(user_ids, dtype=np.int64), self.ids)

    def keep(self, frame: pd.DataFrame, column: str = "user_id") -> pd.DataFrame:
        """The rows of ``frame`` whose ``column`` is not tombstoned (all rows without one)."""
        if not len(self.ids) or column not in frame.columns or not len(frame):
            return frame
        return frame.loc[~self.mask(frame[column].to_numpy(np.int64))]

    def union(self, user_ids, ts: int) -> Tombstones:
        ids = np.asarray(user_ids, dtype=np.int64)
        return Tombstones(np.concatenate([self.ids, ids]),
                          np.concatenate([self.frame["forgotten_ts"].to_numpy(np.int64),
                                          np.full(len(ids), ts, np.int64)]))  # fmt: skip

    @classmethod
    def read(cls, folder: str | Path) -> Tombstones:
        """The list of ``folder`` (empty when it has none)."""
        path = Path(folder) / TOMBSTONE_FILE
        if not path.is_file():
            return cls()
        frame = pd.read_parquet(path)
        if "user_id" not in frame.columns:
            raise ValueError(f"{path}: no user_id column")
        return cls(
            frame["user_id"].to_numpy(np.int64),
            frame.get("forgotten_ts", pd.Series(0, index=frame.index)).to_numpy(),
        )

    def write(self, folder: str | Path) -> Path:
        """``folder/tombstones.parquet``, replaced atomically."""
        path = Path(folder) / TOMBSTONE_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        self.frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
        return path
