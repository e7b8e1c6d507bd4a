"""Matrix factorisation baselines, ALS and BPR, fitted by the ``implicit`` package.

Both learn user and item vectors from the binary training matrix; a score is their dot
product. At scoring time a user's vector comes either from training or from a fold-in of the
history passed to ``score``:

- users without training interactions (or beyond the training users) are always folded in;
- with ``fold_in=True`` every user is folded in, so history added after training (e.g. the
  validation event when scoring the test split) is used. ALS folds in with its exact
  least-squares user step and defaults to this. BPR has no such step; its fold-in is the mean
  of the history items' vectors, a cruder estimate, so BPR defaults to the trained vectors.

Runs are deterministic for a fixed ``seed`` when ``num_threads=1``; ALS is also deterministic
with more threads (users and items are solved independently), BPR's parallel SGD is not.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from recsys.baselines._history import check_users, history_matrix, training_matrix
from recsys.baselines._implicit import Factors, fit_als, fit_bpr
from recsys.core import Recommender
from recsys.data.interactions import ItemFeatures, UserSequences


class _FactorModel(Recommender):
    """Shared fit/score logic; subclasses say how the factors are learned."""

    def __init__(self, *, fold_in: bool) -> None:
        self.fold_in = fold_in
        self.factors_: Factors | None = None
        self.trained_users_: np.ndarray | None = None  # (n_train_users,) bool

    @abstractmethod
    def _learn(self, train: UserSequences) -> Factors:
        """Fit the factors on the training sequences."""

    def fit(
        self, train: UserSequences, *, item_features: ItemFeatures | None = None
    ) -> _FactorModel:
        self.factors_ = self._learn(train)
        self.trained_users_ = train.lengths > 0
        return self

    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        if self.factors_ is None:
            raise RuntimeError(f"{self.name}: call fit before score")
        users = check_users(users, history, len(self.factors_.item), self.name)
        vectors = self._user_vectors(users, history)  # (B, d)
        return np.asarray(vectors @ self.factors_.item.T, dtype=np.float32)

    def _user_vectors(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        refold = np.ones(len(users), dtype=bool)
        if not self.fold_in:
            in_train = users < len(self.trained_users_)
            refold[in_train] = ~self.trained_users_[users[in_train]]
        vectors = np.empty((len(users), self.factors_.item.shape[1]), dtype=np.float32)
        vectors[~refold] = self.factors_.user[users[~refold]]
        if refold.any():
            vectors[refold] = self.factors_.fold_in(history_matrix(history, users[refold]))
        return vectors


class ALS(_FactorModel):
    """Implicit-feedback alternating least squares (Hu, Koren & Volinsky 2008)."""

    name = "als"

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        seed: int = 0,
        num_threads: int = 0,
        fold_in: bool = True,
    ) -> None:
        super().__init__(fold_in=fold_in)
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed
        self.num_threads = num_threads

    def _learn(self, train: UserSequences) -> Factors:
        return fit_als(
            training_matrix(train),
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            seed=self.seed,
            num_threads=self.num_threads,
        )

    def hparams(self) -> dict:
        return {
            "factors": self.factors,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "iterations": self.iterations,
            "seed": self.seed,
            "fold_in": self.fold_in,
        }


class BPR(_FactorModel):
    """Bayesian personalised ranking matrix factorisation (Rendle et al. 2009)."""

    name = "bpr"

    def __init__(
        self,
        *,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        seed: int = 0,
        num_threads: int = 0,
        verify_negative_samples: bool = True,
        fold_in: bool = False,
    ) -> None:
        super().__init__(fold_in=fold_in)
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.seed = seed
        self.num_threads = num_threads
        self.verify_negative_samples = verify_negative_samples

    def _learn(self, train: UserSequences) -> Factors:
        return fit_bpr(
            training_matrix(train),
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            seed=self.seed,
            num_threads=self.num_threads,
            verify_negative_samples=self.verify_negative_samples,
        )

    def hparams(self) -> dict:
        return {
            "factors": self.factors,
            "learning_rate": self.learning_rate,
            "regularization": self.regularization,
            "iterations": self.iterations,
            "seed": self.seed,
            "verify_negative_samples": self.verify_negative_samples,
            "fold_in": self.fold_in,
        }
