"""Cohort queries over the tag table: who has all of these tags, any of those, none of them.

``CohortIndex`` groups the tag rows by tag once (codes, confidences, row ranges per tag), so a
query touches only the rows of the tags it names and counts them per user with one bincount:

* ``all_of``  every listed tag at confidence >= ``min_confidence``;
* ``any_of``  at least one listed tag at confidence >= ``min_confidence``;
* ``none_of`` no listed tag at confidence >= ``min_confidence`` (a weaker tag does not exclude).

Empty lists impose nothing. A tag nobody has matches nobody (so ``all_of`` with it is empty
and ``none_of`` with it excludes nobody). The universe is every profiled user, so a
``none_of``-only query also returns users without any tag.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


class CohortIndex:
    def __init__(self, tags: pd.DataFrame, universe: Iterable[int] | None = None) -> None:
        missing = [c for c in ("user_id", "tag_id", "confidence") if c not in tags.columns]
        if missing:
            raise ValueError(f"tag table: missing columns {missing}")
        tagged = tags["user_id"].to_numpy(dtype=np.int64)
        users = tagged if universe is None else np.asarray(list(universe), dtype=np.int64)
        self.users = np.unique(users)
        user_code = np.searchsorted(self.users, tagged)
        padded = np.append(self.users, np.iinfo(np.int64).min)  # user_code may be len(users)
        outside = padded[user_code] != tagged
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise ValueError(f"tag table row {row}: user {tagged[row]} is not in the universe")
        tag_code, self.tag_names = pd.factorize(tags["tag_id"], sort=True)
        order = np.argsort(tag_code, kind="stable")
        self._user = user_code[order]
        self._confidence = tags["confidence"].to_numpy(dtype=np.float64)[order]
        self._start = np.searchsorted(tag_code[order], np.arange(len(self.tag_names) + 1))

    @property
    def n_users(self) -> int:
        return len(self.users)

    def _counts(self, names: Iterable[str], min_confidence: float) -> np.ndarray:
        """(U,) how many of ``names`` each user holds at or above ``min_confidence``."""
        counts = np.zeros(self.n_users, dtype=np.int64)
        for code in self.tag_names.get_indexer(list(names)):
            if code < 0:
                continue
            lo, hi = self._start[code], self._start[code + 1]
            strong = self._confidence[lo:hi] >= min_confidence
            counts += np.bincount(self._user[lo:hi][strong], minlength=self.n_users)
        return counts

    def mask(
        self,
        all_of: Iterable[str] = (),
        any_of: Iterable[str] = (),
        none_of: Iterable[str] = (),
        min_confidence: float = 0.0,
    ) -> np.ndarray:
        """(U,) bool over ``users``: who satisfies the query."""
        all_of, any_of, none_of = (list(dict.fromkeys(x)) for x in (all_of, any_of, none_of))
        keep = np.ones(self.n_users, dtype=bool)
        if all_of:
            keep &= self._counts(all_of, min_confidence) == len(all_of)
        if any_of:
            keep &= self._counts(any_of, min_confidence) > 0
        if none_of:
            keep &= self._counts(none_of, min_confidence) == 0
        return keep

    def query(
        self,
        all_of: Iterable[str] = (),
        any_of: Iterable[str] = (),
        none_of: Iterable[str] = (),
        min_confidence: float = 0.0,
    ) -> np.ndarray:
        """Sorted user ids of the cohort."""
        return self.users[self.mask(all_of, any_of, none_of, min_confidence)]


def cohort(
    tags: pd.DataFrame,
    all_of: Iterable[str] = (),
    any_of: Iterable[str] = (),
    none_of: Iterable[str] = (),
    min_confidence: float = 0.0,
    universe: Iterable[int] | None = None,
) -> np.ndarray:
    """One-off query; build a ``CohortIndex`` to run many queries on the same tags."""
    return CohortIndex(tags, universe).query(all_of, any_of, none_of, min_confidence)
