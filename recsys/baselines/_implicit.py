"""Thin typed wrapper over the ``implicit`` package; the only module that imports it.

It fits implicit's CPU ALS and BPR on a user x item CSR matrix and returns plain factor arrays
plus a fold-in function that maps new history rows to user vectors, so the rest of the
library never depends on implicit's classes, thread settings or factor layout.

implicit runs its own thread pool; its authors advise limiting BLAS to one thread while it
works, which the wrapper does around every call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from threadpoolctl import threadpool_limits


@dataclass(frozen=True)
class Factors:
    """Scores are ``user @ item.T``; ``fold_in`` maps (B, n_items) history rows to (B, d)."""

    user: np.ndarray  # (n_users, d) float32
    item: np.ndarray  # (n_items, d) float32
    fold_in: Callable[[sp.csr_matrix], np.ndarray]


def fit_als(
    user_items: sp.csr_matrix,
    *,
    factors: int,
    regularization: float,
    alpha: float,
    iterations: int,
    seed: int,
    num_threads: int,
) -> Factors:
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008); confidence = alpha x interaction."""
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=seed,
            num_threads=num_threads,
        )
        model.fit(user_items, show_progress=False)

    def fold_in(rows: sp.csr_matrix) -> np.ndarray:
        # The exact least-squares user step of ALS, given the fitted item factors.
        with threadpool_limits(1, "blas"):
            return model.recalculate_user(np.arange(rows.shape[0]), rows.astype(np.float32))

    return Factors(user=model.user_factors, item=model.item_factors, fold_in=fold_in)


def fit_bpr(
    user_items: sp.csr_matrix,
    *,
    factors: int,
    learning_rate: float,
    regularization: float,
    iterations: int,
    seed: int,
    num_threads: int,
    verify_negative_samples: bool,
) -> Factors:
    """BPR matrix factorisation (Rendle et al. 2009), SGD over sampled (user, pos, neg) triples.

    implicit appends an item-bias column to the item factors and a constant 1 to the user
    factors, so ``user @ item.T`` already includes the bias.
    """
    with threadpool_limits(1, "blas"):
        model = BayesianPersonalizedRanking(
            factors=factors,
            learning_rate=learning_rate,
            regularization=regularization,
            iterations=iterations,
            random_state=seed,
            num_threads=num_threads,
            verify_negative_samples=verify_negative_samples,
        )
        model.fit(user_items, show_progress=False)
    item = model.item_factors

    def fold_in(rows: sp.csr_matrix) -> np.ndarray:
        # BPR has no closed-form user step: use the mean embedding of the history items and
        # the constant 1 that multiplies the item bias.
        binary = rows.astype(np.float32)
        binary.data[:] = 1.0
        n = np.maximum(np.asarray(binary.sum(axis=1)).ravel(), 1.0)
        users = np.asarray(binary @ item[:, :-1]) / n[:, None]  # (B, d)
        return np.hstack([users, np.ones((rows.shape[0], 1), dtype=users.dtype)])

    return Factors(user=model.user_factors, item=item, fold_in=fold_in)
