"""Trained models in the quality benchmark: tuned on one seed, trained with every seed, their
mean and spread reported and compared with the best baseline; the sequential default config
ships with its grid and overrides and builds a model for every point."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
from quality import sequential_grid

from recsys.baselines.registry import make_baseline
from recsys.evaluation.selection import Candidate, QualitySettings, run_quality
from recsys.recommenders.build import make_trained
from recsys.recommenders.sequential import SequentialRecommender
from tests.test_benchmarking import _split

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sasrec_public.yaml"


def _noisy_knn(seed: int = 0, **hparams):
    """Item-kNN whose shrinkage depends on the seed, standing in for a model trained per seed."""
    return make_baseline("item_knn", shrink=float(seed), **hparams)


def test_a_trained_candidate_is_run_per_seed_and_compared_with_the_best_baseline():
    split = _split()
    trained = Candidate("knn_seeded", _noisy_knn, ({"seed": 0, "k_neighbours": 5},),
                        seeds=(0, 1, 2))  # fmt: skip
    pop = Candidate("popularity", partial(make_baseline, "popularity"))
    by_name = {r.name: r for r in run_quality(split, [pop, trained], QualitySettings(ks=(10,)))}
    res = by_name["knn_seeded"]
    assert res.trained and not by_name["popularity"].trained
    assert res.seeds["seeds"] == [0, 1, 2] and len(res.seeds["test_ndcg@10"]) == 3
    assert res.test["ndcg@10"] == round(float(np.mean(res.seeds["test_ndcg@10"])), 6)
    assert res.seeds["std"] >= 0.0
    assert res.vs_best_baseline["best"] == "popularity"
    assert res.vs_best_baseline["diff"] > 0 and res.vs_best_baseline["p_value"] < 1e-3
    assert not by_name["popularity"].vs_best_baseline


def test_the_sequential_default_builds_a_model_for_every_grid_point_and_dataset():
    split = _split()
    _, plain, none = sequential_grid(str(CONFIG), "ml-100k")
    name, movielens, overrides = sequential_grid(str(CONFIG), "ml-1m")
    assert none == {} and overrides == {"maxlen": 200}
    assert len(plain) == len(movielens) >= 2
    assert {p["dropout"] for p in plain} == {p["dropout"] for p in movielens}
    for point in [*plain, *movielens]:
        model = make_trained(name, split, protocol="full", **point)
        assert isinstance(model, SequentialRecommender)
        assert model.model_config.maxlen == point["maxlen"]
        assert model.loss.name == "full_ce" and model.trainer.patience == point["patience"]
