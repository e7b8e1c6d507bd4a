"""Baselines at full strength: EASE over the whole catalogue unless memory says otherwise,
refits on train + validation before the test stage, and grids whose edge is reported."""

from __future__ import annotations

import gc
import logging
import weakref
from functools import partial

import numpy as np
import pytest

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
    # Room for 10 items in float64: 1 dense copy x 8 bytes x 10^2 cells, over a fraction 0.5.
    monkeypatch.setattr(ease_module, "memory_bytes", lambda: 2 * 8 * 10**2)
    assert items_that_fit(8 * 10**2, "float64") == 10
    with caplog.at_level(logging.WARNING, logger="recsys.baselines.ease"):
        model = EASE(l2=5.0, dtype="float64").fit(train)
    assert len(model.items_) == 10
    assert "modelling the 10 most frequent" in caplog.text and "the other 18" in caplog.text


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ease_inverts_the_gram_matrix_in_its_own_memory(dtype):
    rng = np.random.default_rng(0)
    x = rng.random((40, 50)) < 0.3  # (U, m) binary
    gram = (x.T @ x).astype(dtype) + 4.0 * np.eye(x.shape[1], dtype=dtype)
    expected = np.linalg.inv(gram.astype(np.float64))
    a = gram.copy()
    before = a.__array_interface__["data"][0]
    ease_module.inverse_in_place(a)
    assert a.__array_interface__["data"][0] == before
    np.testing.assert_allclose(a, expected, rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-7)
    assert np.array_equal(a, a.T)  # both triangles hold the inverse


def test_ease_mirrors_the_inverse_block_by_block(monkeypatch):
    monkeypatch.setattr(ease_module, "_MIRROR_ROWS", 7)  # blocks that do not divide 30 rows
    rng = np.random.default_rng(1)
    x = (rng.random((80, 30)) < 0.2).astype(np.float64)
    gram = x.T @ x + np.eye(30)
    a = gram.copy()
    ease_module.inverse_in_place(a)
    np.testing.assert_allclose(a, np.linalg.inv(gram), atol=1e-10)


def test_ease_says_when_the_gram_matrix_is_not_positive_definite():
    a = np.array([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="not positive definite in float64"):
        ease_module.inverse_in_place(a)


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


def test_the_train_only_model_is_released_before_the_refit_fits():
    split = _split()
    alive: list[weakref.ref] = []  # every model built so far, weakly

    def build(**hparams):
        model = make_baseline("popularity", **hparams)
        fit = model.fit

        def fit_once_the_others_are_gone(train, **kw):
            gc.collect()
            others = [ref() for ref in alive if ref() not in (None, model)]
            assert others == [], "a fitted model was still held when another fit began"
            return fit(train, **kw)

        model.fit = fit_once_the_others_are_gone
        alive.append(weakref.ref(model))
        return model

    candidate = Candidate("popularity", build, ({"window": None},), refit=True)
    (result,) = run_quality(split, [candidate], QualitySettings(ks=(10,)))
    assert len(alive) == 2 and result.refit["fitted_on"] == "train + validation"


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
