"""Trained models in the quality benchmark: tuned on one seed, trained with every seed, their
mean and spread reported and compared with the best baseline; the sequential default config
ships with its grid and overrides and builds a model for every point."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from quality import sequential_grid

from recsys.baselines.registry import make_baseline
from recsys.evaluation.combine import combine_by_name, combine_runs, result_from_json
from recsys.evaluation.selection import Candidate, QualitySettings, compare_results, run_quality
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


def _run_alone(split, hparams: dict, seed: int):
    """One setting and one seed in a run of its own, through its report's JSON entry."""
    cand = Candidate("knn_seeded", _noisy_knn, ({**hparams, "seed": seed},), seeds=(seed,))
    (res,) = run_quality(split, [cand], QualitySettings(ks=(10,)))
    return result_from_json(res.name, json.loads(json.dumps(res.to_json(per_user=True))))


def test_grid_points_and_seeds_run_apart_combine_into_the_single_run_result():
    split = _split()
    points = ({"k_neighbours": 5}, {"k_neighbours": 2})
    pop = Candidate("popularity", partial(make_baseline, "popularity"))
    together = Candidate("knn_seeded", _noisy_knn, tuple({**p, "seed": 0} for p in points),
                         seeds=(0, 1, 2))  # fmt: skip
    settings = QualitySettings(ks=(10,))
    whole = {r.name: r for r in run_quality(split, [pop, together], settings)}
    apart = [_run_alone(split, p, seed) for p in points for seed in (0, 1, 2)]
    baseline = run_quality(split, [pop], settings)
    combined = {r.name: r for r in combine_by_name([*baseline, *apart], settings.metric)}
    compare_results(list(combined.values()), settings)
    one, many = whole["knn_seeded"], combined["knn_seeded"]
    assert many.hparams == one.hparams and many.seeds["seeds"] == [0, 1, 2]
    assert many.seeds["test_ndcg@10"] == one.seeds["test_ndcg@10"]
    assert many.test["ndcg@10"] == pytest.approx(one.test["ndcg@10"], abs=1e-6)
    assert many.vs_best_baseline["p_value"] == pytest.approx(one.vs_best_baseline["p_value"])
    assert len(many.grid) == len(points) and many.seeds["combined_runs"] == 6


def test_an_untrained_baselines_settings_run_apart_combine_into_the_single_run_result():
    split = _split()
    points = ({"k_neighbours": 5, "shrink": 0.0}, {"k_neighbours": 2, "shrink": 0.0})
    settings = QualitySettings(ks=(10,))

    def knn(*grid):
        return Candidate("item_knn", partial(make_baseline, "item_knn"), grid, refit=True)

    (whole,) = run_quality(split, [knn(*points)], settings)
    apart = []
    for point in points:
        (res,) = run_quality(split, [knn(point)], settings)
        apart.append(result_from_json(res.name, json.loads(json.dumps(res.to_json(per_user=True)))))
    (combined,) = combine_by_name(apart, settings.metric)
    assert combined.hparams == whole.hparams and combined.test == whole.test
    assert combined.grid == whole.grid and combined.refit == whole.refit
    assert combined.seeds == {} and not combined.trained


def test_combining_refuses_a_setting_without_the_tuning_seed_and_reports_without_targets():
    split = _split()
    runs = [_run_alone(split, {"k_neighbours": 5}, 0), _run_alone(split, {"k_neighbours": 2}, 1)]
    with pytest.raises(ValueError, match="no run with the tuning seed 0"):
        combine_runs(runs, "ndcg@10")
    entry = runs[0].to_json()
    with pytest.raises(ValueError, match=r"r.json: model 'knn_seeded': no \['per_user'\]"):
        result_from_json("knn_seeded", entry, source="r.json")
