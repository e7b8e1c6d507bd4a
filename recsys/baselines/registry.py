"""Baselines by name, and the small hyperparameter grids the quality benchmark tunes over.

Each grid lists up to 12 settings chosen to span the usual good region of its model on datasets of
the size used here (thousands to tens of thousands of items); the benchmark picks the best
point on the validation split. Grid points give only the hyperparameters that vary; the rest
keep their constructor defaults.
"""

from __future__ import annotations

from recsys.baselines.content_based import ContentBased
from recsys.baselines.ease import EASE
from recsys.baselines.item_knn import ItemKNN
from recsys.baselines.matrix_factorization import ALS, BPR
from recsys.baselines.popularity import Popularity
from recsys.core import Recommender

BASELINES: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (Popularity, ItemKNN, EASE, ALS, BPR, ContentBased)
}

DEFAULT_GRIDS: dict[str, list[dict]] = {
    # The window is in the dataset's time unit (seconds or positions), so no window is generic.
    "popularity": [{"window": None}],
    # Shrinkage and recency weighting matter more than k on sparse data (Beauty: shrink 0 halves
    # HR@10; a half-life of 2 adds about a tenth). The benchmark refines the best point by
    # halving and doubling each value, k included, so the grid only has to bracket the optimum.
    "item_knn": [
        {"k_neighbours": 100, "shrink": shrink, "recency_half_life": half_life}
        for shrink in (5.0, 25.0, 100.0, 400.0)
        for half_life in (None, 1.0, 4.0)
    ],
    # Sparse Amazon data peaks near l2 = 50, dense MovieLens data in the thousands; a fit over a
    # 24k-item catalogue takes minutes, so the grid is coarse (x4) and refinement fills it in.
    "ease": [{"l2": l2} for l2 in (25.0, 100.0, 400.0, 1600.0, 6400.0)],
    "als": [
        {"factors": factors, "regularization": reg}
        for factors in (64, 128)
        for reg in (0.01, 0.1, 1.0)
    ],
    "bpr": [
        {"factors": factors, "learning_rate": lr} for factors in (64, 128) for lr in (0.01, 0.05)
    ],
    "content_based": [
        {"popularity_weight": w, "recency_half_life": h}
        for w in (0.0, 0.1, 0.5)
        for h in (3.0, None)
    ],
}


def make_baseline(name: str, **hparams: object) -> Recommender:
    """The baseline registered under ``name``, built with the given hyperparameters."""
    if name not in BASELINES:
        raise KeyError(f"unknown baseline {name!r}; known: {', '.join(sorted(BASELINES))}")
    return BASELINES[name](**hparams)
