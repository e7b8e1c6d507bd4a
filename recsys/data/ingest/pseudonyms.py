"""User ids replaced by keyed pseudonyms chunk by chunk, each distinct raw id hashed once.

A raw id is hashed from its text form, so ``123`` read from Parquet and ``"123"`` read from CSV
get the same pseudonym (``recsys.data.pseudonym``). Hashes are cached per run: the cache grows
with the number of distinct users, never with the number of events.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.pseudonym import pseudonymise, resolve_key


class Pseudonymiser:
    def __init__(self, key: str | None) -> None:
        resolve_key(key)  # no key: fail before any file is read
        self._key = key
        self._cache: dict[str, int] = {}

    def __call__(self, column: pd.Series) -> pd.Series:
        """Pseudonyms (nullable Int64) where a raw id is present; missing ids stay missing."""
        codes, distinct = pd.factorize(column)
        texts = [str(v) for v in distinct]
        new = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if new:
            self._cache.update(zip(new, pseudonymise(np.array(new, dtype=object), self._key)
                                   .tolist(), strict=True))  # fmt: skip
        hashed = np.r_[np.fromiter((self._cache[t] for t in texts), np.int64, len(texts)), 0]
        missing = codes < 0
        values = hashed[codes]  # code -1 (missing) reads the trailing 0
        return pd.Series(pd.arrays.IntegerArray(values, missing), index=column.index)
