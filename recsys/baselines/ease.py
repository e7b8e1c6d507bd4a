"""EASE: embarrassingly shallow autoencoder (Steck, WWW 2019), closed form.

    P = (X^T X + l2 I)^-1,    B = I - P diag(1 / diag(P)),  i.e. B_ij = -P_ij / P_jj, B_ii = 0

A user's scores are their binary history row times B. The inverse is dense and costs about
m^3 floating-point operations for m items; it is formed in the Gram matrix's own memory by
LAPACK's Cholesky factorisation and inverse (``potrf`` / ``potri``), so one (m, m) array is all
a fit holds (amazon-beauty-bert4rec's 49,438 items: 9.8 GB in float32, about 15 minutes on one
core; ``benchmarks/results/quality_amazon-beauty-bert4rec_full_ease.md``). By default every
training item is modelled whenever that array fits in ``memory_fraction`` of the machine's
memory (its total, so that every fit of a grid models the same items); only when it does not
(or when ``max_items`` asks) is the model restricted to the most frequent items (ties broken by
lower index), and the fit logs how many items were left out and why. Capping the catalogue costs
accuracy: on amazon-games-sasrec under full ranking, all 23,715 items at l2 = 50 give test
NDCG@10 0.0453 fitted on train and 0.0488 refitted on train + validation
(``benchmarks/results/quality_amazon-games-sasrec_full_ease.md``), against 0.0445 for the
10,000 most frequent items.

Items outside that set, and items never seen in training, are not modelled: they are ranked
strictly below every modelled item of the same user (at the row minimum minus one, plus half
their popularity share) and so among themselves by training popularity. Modelled items carry
a popularity term of at most ``1e-6``, so that users whose history holds no modelled item
still get a popularity ranking.

``num_threads`` sets the BLAS threads of the fit (unchanged when None). On a host whose cores
are busy with other work, 1 avoids the stalls that made a two-thread fit slower than a
one-thread fit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits

from recsys.baselines._history import check_users, history_matrix, item_counts, training_matrix
from recsys.core import Recommender
from recsys.data.interactions import ItemFeatures, UserSequences
from recsys.data.vocab import N_RESERVED

POPULARITY_EPS = 1e-6
_DTYPES = {"float32": np.float32, "float64": np.float64}
# Dense (m, m) arrays alive at the peak of a fit: the Gram matrix, inverted in place.
_DENSE_COPIES = 1
# Rows per block when the inverse's lower triangle is mirrored into its upper one.
_MIRROR_ROWS = 1024
_MEMINFO = Path("/proc/meminfo")

log = logging.getLogger(__name__)


def memory_bytes() -> int | None:
    """MemTotal of this machine in bytes (None where /proc/meminfo is unreadable). The total,
    not what is free at the moment: every fit of a grid then models the same items, whatever
    else the machine is running."""
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def items_that_fit(budget_bytes: int, dtype: str) -> int:
    """The largest item count whose fit stays within ``budget_bytes``."""
    per_cell = _DENSE_COPIES * np.dtype(_DTYPES[dtype]).itemsize
    return int(np.sqrt(max(budget_bytes, 0) / per_cell))


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """B from a dense Gram matrix X^T X (overwritten: the inverse is formed in place)."""
    if not gram.flags.c_contiguous:
        gram = gram.T  # symmetric, so the transpose is the same matrix in row-major order
    if not gram.flags.c_contiguous:
        raise ValueError("EASE: the Gram matrix must be a contiguous array")
    gram[np.diag_indices_from(gram)] += l2
    inverse_in_place(gram)
    p = gram  # P, now
    p /= -np.diag(p).copy()  # column j divided by -P_jj
    np.fill_diagonal(p, 0.0)
    return p


def inverse_in_place(a: np.ndarray) -> None:
    """Replace the symmetric positive definite, row-major ``a`` by its inverse, in its own memory.

    LAPACK works column-major: ``a.T`` is the same matrix in that order, so its upper triangle,
    where ``potrf`` / ``potri`` write, is ``a``'s lower one, mirrored afterwards."""
    f = a.T  # (m, m), Fortran order, a view
    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (f,))
    factor, info = potrf(f, lower=0, overwrite_a=1, clean=0)
    if info == 0:
        factor, info = potri(factor, lower=0, overwrite_c=1)
    if info != 0:
        raise ValueError(
            f"EASE: X^T X + l2 I is not positive definite in {a.dtype} (LAPACK info {info})"
        )
    if not np.shares_memory(factor, a):  # LAPACK copied: the wrapper could not work in place
        a[...] = factor.T
    _mirror_lower(a)


def _mirror_lower(a: np.ndarray) -> None:
    """Copy the lower triangle of square ``a`` into its upper one, a block of rows at a time."""
    m = len(a)
    for r0 in range(0, m, _MIRROR_ROWS):
        r1 = min(r0 + _MIRROR_ROWS, m)
        block = a[r0:r1, r0:r1]
        upper = np.triu_indices(r1 - r0, 1)
        block[upper] = block.T[upper]
        a[r0:r1, r1:] = a[r1:, r0:r1].T


class EASE(Recommender):
    """Item-item linear autoencoder with a zero diagonal, solved in closed form."""

    name = "ease"

    def __init__(
        self,
        *,
        l2: float = 500.0,
        max_items: int | None = None,
        dtype: str = "float32",
        num_threads: int | None = None,
        memory_fraction: float = 0.5,
    ) -> None:
        if l2 <= 0:
            raise ValueError(f"EASE: l2 must be positive, got {l2}")
        if max_items is not None and max_items < 1:
            raise ValueError(f"EASE: max_items must be >= 1 or None, got {max_items}")
        if dtype not in _DTYPES:
            raise ValueError(f"EASE: dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if not 0.0 < memory_fraction <= 1.0:
            raise ValueError(f"EASE: memory_fraction must lie in (0, 1], got {memory_fraction}")
        self.l2 = l2
        self.max_items = max_items
        self.memory_fraction = memory_fraction
        self.dtype = dtype
        self.num_threads = num_threads
        self.items_: np.ndarray | None = None  # (m,) modelled item indices, ascending
        self.weights_: np.ndarray | None = None  # (m, m) B restricted to modelled items
        self.popularity_: np.ndarray | None = None  # (n_items,) count / max count, in [0, 1]

    def fit(self, train: UserSequences, *, item_features: ItemFeatures | None = None) -> EASE:
        counts = item_counts(train)
        counts[:N_RESERVED] = 0.0
        self.items_ = self._modelled_items(counts)
        x = training_matrix(train)[:, self.items_]  # (U, m)
        gram = (x.T @ x).astype(_DTYPES[self.dtype]).toarray()  # (m, m)
        with threadpool_limits(self.num_threads, "blas"):  # None leaves the threads as they are
            self.weights_ = ease_weights(gram, self.l2)
        self.popularity_ = counts / max(counts.max(), 1.0)
        return self

    def _modelled_items(self, counts: np.ndarray) -> np.ndarray:
        seen = np.flatnonzero(counts > 0)
        cap = self._item_cap(len(seen))
        if cap is None or len(seen) <= cap:
            return seen
        by_count = seen[np.lexsort((seen, -counts[seen]))]  # most frequent first
        return np.sort(by_count[:cap])

    def _item_cap(self, n_seen: int) -> int | None:
        """``max_items``, lowered (with a log line) when the whole fit would not fit in memory."""
        cap = self.max_items
        memory = memory_bytes()
        if memory is None:
            return cap
        fits = items_that_fit(int(memory * self.memory_fraction), self.dtype)
        if fits < min(n_seen, cap or n_seen):
            log.warning(
                "EASE: %d training items need %.1f GB in %s, more than %.0f%% of this machine's "
                "%.1f GB: modelling the %d most frequent, the other %d ranked by popularity",
                n_seen, _DENSE_COPIES * n_seen**2 * np.dtype(_DTYPES[self.dtype]).itemsize / 1e9,
                self.dtype, 100 * self.memory_fraction, memory / 1e9, fits, n_seen - fits,
            )  # fmt: skip
            return fits
        return cap

    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        if self.weights_ is None:
            raise RuntimeError("EASE: call fit before score")
        users = check_users(users, history, len(self.popularity_), self.name)
        h = history_matrix(history, users)[:, self.items_]  # (B, m)
        modelled = np.asarray(h.astype(self.weights_.dtype) @ self.weights_, dtype=np.float32)
        floor = modelled.min(axis=1, keepdims=True) - 1.0 if modelled.size else 0.0
        popularity = self.popularity_.astype(np.float32)
        scores = np.empty((len(users), len(popularity)), dtype=np.float32)
        scores[:] = floor + 0.5 * popularity
        scores[:, self.items_] = modelled + POPULARITY_EPS * popularity[self.items_]
        return scores

    def hparams(self) -> dict:
        return {"l2": self.l2, "max_items": self.max_items, "dtype": self.dtype}
