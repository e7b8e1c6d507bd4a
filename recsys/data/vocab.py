"""Raw id -> dense index mapping shared by training, evaluation and serving.

Index 0 is padding and index 1 is "unknown" (out of vocabulary); known ids map to 2..n+1 in
ascending raw-id order, so the same ids always give the same vocabulary. A vocabulary is
saved beside data and checkpoints so that every stage maps ids identically. ``extend`` grows a
vocabulary with new ids after the old ones (ingesting more days): old ids keep their indices,
so the ids are then in index order, no longer sorted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.positions import IdPositions

PAD = 0
OOV = 1
N_RESERVED = 2


@dataclass(frozen=True)
class Vocab:
    name: str
    ids: np.ndarray  # (n,) unique raw int64 ids in index order (sorted unless extended)

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, dtype=np.int64)
        ascending = len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1]))
        # An extended vocabulary looks ids up through the permutation that sorts them.
        sorter = None if ascending else np.argsort(ids, kind="stable")
        object.__setattr__(self, "_sorter", sorter)
        object.__setattr__(self, "_sorted", ids if sorter is None else ids[sorter])

    @classmethod
    def build(cls, name: str, raw_ids: np.ndarray) -> Vocab:
        # Sort + neighbour compare: np.unique is many times slower on millions of int64 ids.
        ids = np.sort(np.asarray(raw_ids, dtype=np.int64).ravel())
        keep = np.ones(len(ids), dtype=bool)
        keep[1:] = ids[1:] != ids[:-1]
        return cls(name=name, ids=ids[keep])

    def __len__(self) -> int:
        """Size of the index space, reserved slots included."""
        return len(self.ids) + N_RESERVED

    @property
    def n_known(self) -> int:
        return len(self.ids)

    def extend(self, raw_ids: np.ndarray) -> Vocab:
        """This vocabulary plus the ids it lacks, appended in ascending order."""
        new = Vocab.build(self.name, raw_ids).ids
        new = new[self.encode(new) == OOV]
        return Vocab(self.name, np.concatenate([self.ids.astype(np.int64), new]))

    def encode(self, raw_ids: np.ndarray) -> np.ndarray:
        """Map raw ids to dense indices; unknown ids become OOV."""
        raw = np.asarray(raw_ids, dtype=np.int64)
        positions = self._positions()
        if positions is not None:  # ids numbered from 0: one array read per id
            pos = positions.of(raw)
            return np.where(pos >= 0, pos + N_RESERVED, OOV)
        sorter, ids = self._sorter, self._sorted
        pos = np.searchsorted(ids, raw)
        pos_clipped = np.minimum(pos, max(len(ids) - 1, 0))
        known = (
            (pos < len(ids)) & (ids[pos_clipped] == raw)
            if len(ids)
            else (np.zeros(raw.shape, dtype=bool))
        )
        index = pos_clipped if sorter is None else sorter[pos_clipped]
        return np.where(known, index + N_RESERVED, OOV).astype(np.int64)

    def __getstate__(self) -> dict:  # the look-up table is remade on first use, not stored
        return {k: v for k, v in self.__dict__.items() if k != "_dense"}

    def _positions(self) -> IdPositions | None:
        """A dense id -> position table when the ids are dense enough (made on first use)."""
        if "_dense" not in self.__dict__:
            positions = IdPositions(self.ids)
            object.__setattr__(self, "_dense", positions if positions.dense else None)
        return self.__dict__["_dense"]

    def decode(self, index: np.ndarray) -> np.ndarray:
        """Map dense indices back to raw ids; reserved indices raise."""
        idx = np.asarray(index, dtype=np.int64)
        if np.any(idx < N_RESERVED) or np.any(idx >= len(self)):
            raise ValueError(
                f"vocab {self.name!r}: cannot decode padding, unknown or out-of-range index"
            )
        return self.ids[idx - N_RESERVED]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path.with_suffix(".npy"), self.ids)
        path.with_suffix(".json").write_text(
            json.dumps({"name": self.name, "size": len(self), "pad": PAD, "oov": OOV})
        )

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        return cls(name=meta["name"], ids=np.load(path.with_suffix(".npy")))


# entity -> (table, id column) of the live-commerce tables
ENTITY_IDS: dict[str, tuple[str, str]] = {
    "user": ("users", "user_id"),
    "streamer": ("streamers", "streamer_id"),
    "product": ("products", "product_id"),
    "session": ("live_sessions", "session_id"),
}


def vocabs_from_frames(frames: Mapping[str, pd.DataFrame]) -> dict[str, Vocab]:
    """One vocabulary per entity from its table's ids (sorted, so deterministic)."""
    return {
        entity: Vocab.build(entity, frames[table][column].to_numpy(np.int64))
        for entity, (table, column) in ENTITY_IDS.items()
    }


def save_vocabs(vocabs: Mapping[str, Vocab], folder: str | Path) -> None:
    for entity, vocab in vocabs.items():
        vocab.save(Path(folder) / entity)


def load_vocabs(folder: str | Path) -> dict[str, Vocab]:
    return {p.stem: Vocab.load(p) for p in sorted(Path(folder).glob("*.json"))}
