"""Baselines at full strength: EASE over the whole catalogue unless memory says otherwise,
refits on train + validation before the test stage, and grids whose edge is reported."""

from __future__ import annotations

import logging
from functools import partial

import numpy as np

from recsys.baselines import ease as ease_module
from recsys.baselines.ease import EASE, items_that_fit
from recsys.baselines.registry import make_baseline
from recsys.evaluation.selection import Candidate, QualitySettings, grid_edges, run_quality
from tests.test_baselines import random_sequences
from tests.test_benchmarking import _split


def test_ease_models_every_item_when_the_gram_fits():
    train = random_sequences(n_users=60, n_items=30, density=0.3, seed=1)
    model = EASE(l2=5.0).fit(train)
    assert model.max_items is None
    np.testing.assert_array_equal(model.items_, np.flatnonzero(np.bincount(train.items) > 0))


def test_ease_caps_the_catalogue_to_the_memory_it_has_and_says_so(monkeypatch, caplog):
    train = random_sequences(n_users=60, n_items=30, density=0.3, seed=1)
    # Room for 10 items in float64: 2 dense copies x 8 bytes x 10^2 cells, over a fraction 0.5.
    monkeypatch.setattr(ease_module, "memory_bytes", lambda: 2 * 2 * 8 * 10**2)
    assert items_that_fit(2 * 8 * 10**2, "float64") == 10
    with caplog.at_level(logging.WARNING, logger="recsys.baselines.ease"):
        model = EASE(l2=5.0, dtype="float64").fit(train)
    assert len(model.items_) == 10
    assert "modelling the 10 most frequent" in caplog.text and "the other 18" in caplog.text


class _Recording:
    """A popularity model that remembers how many events it was fitted on."""

    fitted_on: list[int] = []

    def __new__(cls, **hparams):
        model = make_baseline("popularity", **hparams)
        fit = model.fit

        def recording_fit(train, **kw):
            cls.fitted_on.append(len(train.items))
            return fit(train, **kw)

        model.fit = recording_fit
        return model


def test_refit_fits_the_chosen_setting_on_train_and_validation_before_testing():
    split = _split()
    _Recording.fitted_on = []
    candidate = Candidate("popularity", _Recording, ({"window": None},), refit=True)
    (result,) = run_quality(split, [candidate], QualitySettings(ks=(10,)))
    assert _Recording.fitted_on == [len(split.train.items), len(split.test_history.items)]
    assert result.refit["fitted_on"] == "train + validation"
    assert set(result.refit) >= {"test_ndcg@10_train_only", "test_ndcg@10_refit", "p_value"}
    assert result.test["ndcg@10"] == result.refit["test_ndcg@10_refit"]


def test_grid_edges_name_the_hyperparameters_the_search_did_not_bracket():
    rows = [{"hparams": {"l2": v, "dtype": "float32"}} for v in (10.0, 100.0, 1000.0)]
    assert grid_edges(rows, {"l2": 100.0, "dtype": "float32"}) == []
    (edge,) = grid_edges(rows, {"l2": 10.0, "dtype": "float32"})
    assert "l2=10.0 is the lowest value tried" in edge
    assert grid_edges(rows[:1], {"l2": 10.0}) == []  # one value tried: no edge to speak of


def test_a_refined_knn_reports_its_edges_and_refits():
    split = _split()
    knn = Candidate(
        "item_knn",
        partial(make_baseline, "item_knn"),
        ({"k_neighbours": 5, "shrink": 0.0}, {"k_neighbours": 40, "shrink": 0.0}),
        neighbourhood=True,
        max_refine_rounds=1,
        refit=True,
    )
    (result,) = run_quality(split, [knn], QualitySettings(ks=(10,)))
    assert result.refit and len(result.neighbourhood) == 2
    tried_k = sorted({r["hparams"]["k_neighbours"] for r in result.grid})
    k = result.hparams["k_neighbours"]
    assert (k in (tried_k[0], tried_k[-1])) == any("k_neighbours" in e for e in result.grid_edges)
