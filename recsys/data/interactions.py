"""The interaction format every dataset is reduced to, and the split containers.

Stages: raw files or event tables -> validated frames -> ``Interactions`` (dense indices from a
``Vocab``) -> ``Split`` (train sequences, validation and test targets) -> model datasets.

Item indices follow the vocabulary convention: 0 padding, 1 unknown, real items 2..n_items-1,
so ``n_items`` is the width of a score matrix and columns 0 and 1 are never recommended.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from recsys.data.vocab import N_RESERVED, Vocab


@dataclass(frozen=True)
class Interactions:
    """Implicit-feedback interactions in dense indices, one row per (user, item, time)."""

    user: np.ndarray  # (N,) int64 user index
    item: np.ndarray  # (N,) int64 item index
    ts: np.ndarray  # (N,) int64 time or order key (file order when a dataset has no times)
    user_vocab: Vocab
    item_vocab: Vocab
    name: str = "interactions"

    def __post_init__(self) -> None:
        n = len(self.user)
        if len(self.item) != n or len(self.ts) != n:
            raise ValueError(f"{self.name}: user/item/ts arrays differ in length")

    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.user_vocab)

    @property
    def n_items(self) -> int:
        return len(self.item_vocab)

    def sequences(self) -> UserSequences:
        """Per-user chronological sequences (stable: ties keep input order)."""
        order = np.lexsort((np.arange(len(self)), self.ts, self.user))
        user, item, ts = self.user[order], self.item[order], self.ts[order]
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.add.at(indptr, user + 1, 1)
        np.cumsum(indptr, out=indptr)
        return UserSequences(indptr=indptr, items=item, ts=ts, n_items=self.n_items)


@dataclass(frozen=True)
class UserSequences:
    """CSR-style chronological item sequences, one row per user index."""

    indptr: np.ndarray  # (n_users + 1,) int64
    items: np.ndarray  # (nnz,) int64, chronological within a row
    ts: np.ndarray  # (nnz,) int64
    n_items: int

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def row(self, user: int) -> np.ndarray:
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def to_csr(self, binary: bool = True) -> sp.csr_matrix:
        """User x item matrix; repeated interactions count once when ``binary``."""
        data = np.ones(len(self.items), dtype=np.float32)
        m = sp.csr_matrix((data, self.items, self.indptr), shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def append(self, user: np.ndarray, item: np.ndarray, ts: np.ndarray) -> UserSequences:
        """These sequences with one more event per listed user at the end (e.g. train + valid)."""
        lengths = self.lengths.copy()
        np.add.at(lengths, user, 1)
        indptr = np.zeros_like(self.indptr)
        np.cumsum(lengths, out=indptr[1:])
        items = np.empty(indptr[-1], dtype=np.int64)
        times = np.empty(indptr[-1], dtype=np.int64)
        extra = np.zeros(self.n_users, dtype=np.int64)
        np.add.at(extra, user, 1)
        # Old rows keep their order at the start of each new row.
        old_pos = np.repeat(indptr[:-1] - self.indptr[:-1], self.lengths) + np.arange(
            len(self.items)
        )
        items[old_pos] = self.items
        times[old_pos] = self.ts
        order = np.lexsort((ts, user))
        u_sorted = user[order]
        rank = np.arange(len(order)) - np.searchsorted(u_sorted, u_sorted)
        new_pos = indptr[u_sorted] + self.lengths[u_sorted] + rank
        items[new_pos] = item[order]
        times[new_pos] = ts[order]
        return UserSequences(indptr=indptr, items=items, ts=times, n_items=self.n_items)


@dataclass(frozen=True)
class Targets:
    """Held-out (user, item, time) targets, optionally with the candidates each may be ranked in.

    ``cand_indptr``/``cand_items`` (a CSR of candidate sets) restrict ranking to the items
    available at the target's time, e.g. rooms live at that moment; ``None`` means the full
    catalogue. Target ``i`` ranks in set ``cand_set[i]``, or set ``i`` without ``cand_set``:
    targets at moments when the same items are live share one set, so memory grows with the
    distinct sets, not with the targets.
    """

    user: np.ndarray  # (T,) int64
    item: np.ndarray  # (T,) int64
    ts: np.ndarray  # (T,) int64
    cand_indptr: np.ndarray | None = None  # (S + 1,) int64
    cand_items: np.ndarray | None = None  # (nnz,) int64
    cand_set: np.ndarray | None = None  # (T,) int64 set of each target; None: S == T, set i

    def __len__(self) -> int:
        return len(self.user)

    @property
    def has_candidates(self) -> bool:
        return self.cand_indptr is not None

    def sets_of(self, positions: np.ndarray) -> np.ndarray:
        """The candidate set (row of ``cand_indptr``) of each target at ``positions``."""
        positions = np.asarray(positions, dtype=np.int64)
        return positions if self.cand_set is None else self.cand_set[positions]

    def candidates(self, position: int) -> np.ndarray:
        """The candidates of one target."""
        k = int(self.sets_of(np.array([position]))[0])
        return self.cand_items[self.cand_indptr[k] : self.cand_indptr[k + 1]]

    def n_candidates(self) -> np.ndarray:
        """(T,) the size of every target's candidate set."""
        return np.diff(self.cand_indptr)[self.sets_of(np.arange(len(self)))]

    def subset(self, mask_or_index: np.ndarray) -> Targets:
        idx = np.flatnonzero(mask_or_index) if mask_or_index.dtype == bool else mask_or_index
        if self.cand_indptr is None:
            return Targets(self.user[idx], self.item[idx], self.ts[idx])
        return Targets(self.user[idx], self.item[idx], self.ts[idx], self.cand_indptr,
                       self.cand_items, self.sets_of(idx))  # fmt: skip


@dataclass(frozen=True)
class ItemFeatures:
    """Side information aligned with item indices (row i describes item index i)."""

    categorical: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # (n_items,) int64, 0 = missing
    numeric: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # (n_items,) float32, NaN = missing
    tokens: sp.csr_matrix | None = None  # (n_items, n_tokens) bag of keywords / genres
    token_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Split:
    """A train/validation/test split.

    Models fit on ``train``. Validation targets are scored with ``train`` as history; test
    targets with ``test_history`` (train plus the validation events), the usual leave-one-out
    convention.
    """

    name: str
    train: UserSequences
    valid: Targets
    test: Targets
    test_history: UserSequences
    user_vocab: Vocab
    item_vocab: Vocab
    item_features: ItemFeatures | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.user_vocab)

    @property
    def n_items(self) -> int:
        return len(self.item_vocab)

    @property
    def n_known_items(self) -> int:
        return self.n_items - N_RESERVED
