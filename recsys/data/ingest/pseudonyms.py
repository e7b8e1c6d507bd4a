"""User ids replaced by keyed pseudonyms chunk by chunk, each distinct raw id hashed once.

A raw id is hashed from its text form (``recsys.data.pseudonym``), so ``123`` read from
Parquet and ``"123"`` read from CSV get the same pseudonym. Hashes are cached per run: integer
ids in a hash index, text ids in a dict; either grows with the number of distinct users,
never with the number of events.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from pandas.api import types as pdt

from recsys.data.pseudonym import resolve_key


class Pseudonymiser:
    def __init__(self, key: str | None) -> None:
        self._key = resolve_key(key)  # no key: fail before any file is read
        self._index = pd.Index(np.zeros(0, dtype=np.int64))  # raw integer ids hashed so far
        self._int_hashes = np.zeros(0, dtype=np.int64)  # their pseudonyms, in index order
        self._texts: dict[str, int] = {}

    def __call__(self, column: pd.Series) -> pd.Series:
        """Pseudonyms (nullable Int64) where a raw id is present; missing ids stay missing."""
        if pdt.is_integer_dtype(column.dtype) and not column.hasnans:
            # Integer ids without gaps: one hash lookup per row, no factorising first.
            values = self._from_ints(column.to_numpy(np.int64), distinct=False)
            return pd.Series(pd.arrays.IntegerArray(values, np.zeros(len(values), bool)),
                             index=column.index)  # fmt: skip
        codes, distinct = pd.factorize(column)
        if pdt.is_integer_dtype(np.asarray(distinct).dtype):
            hashed = self._from_ints(np.asarray(distinct, dtype=np.int64))
        else:
            hashed = self._from_texts([str(v) for v in distinct])
        missing = codes < 0
        values = np.r_[hashed, 0][codes]  # code -1 (missing) reads the trailing 0
        return pd.Series(pd.arrays.IntegerArray(values, missing), index=column.index)

    def _hash(self, texts: list[str]) -> np.ndarray:
        """``recsys.data.pseudonym.pseudonymise`` of each text (already distinct)."""
        # Copying a keyed state skips hashing the key block again for every id.
        keyed = hashlib.blake2b(digest_size=8, key=self._key)

        def one(text: str) -> int:
            h = keyed.copy()
            h.update(text.encode("utf-8"))
            return int.from_bytes(h.digest(), "little") >> 1

        return np.fromiter(map(one, texts), dtype=np.int64, count=len(texts))

    def _from_ints(self, ids: np.ndarray, distinct: bool = True) -> np.ndarray:
        """Each id looked up in a hash index; ids not hashed yet are hashed once each."""
        pos = self._index.get_indexer(ids)
        if (pos < 0).any():
            new = ids[pos < 0] if distinct else pd.unique(ids[pos < 0])
            hashes = self._hash([str(v) for v in new.tolist()])
            _check_collisions(self._int_hashes, hashes)
            self._int_hashes = np.concatenate([self._int_hashes, hashes])
            self._index = self._index.append(pd.Index(new))
            pos = self._index.get_indexer(ids)
        return self._int_hashes[pos]

    def _from_texts(self, texts: list[str]) -> np.ndarray:
        new = [t for t in texts if t not in self._texts]
        if new:
            hashes = self._hash(new)
            _check_collisions(np.fromiter(self._texts.values(), np.int64), hashes)
            self._texts.update(zip(new, hashes.tolist(), strict=True))
        return np.fromiter((self._texts[t] for t in texts), dtype=np.int64, count=len(texts))


def _check_collisions(old: np.ndarray, new: np.ndarray) -> None:
    """Two distinct raw ids of one kind with one pseudonym (about 1e-7 for a million ids)."""
    every = np.sort(np.concatenate([old, new]))
    if np.any(every[1:] == every[:-1]):
        raise RuntimeError("pseudonym collision between two raw ids; use a different key")
