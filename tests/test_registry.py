"""Adding a model: one model file, one config and one registry entry are all it takes.

The toy model (``tests/toy_model.py``) is registered, trained by ``train(cfg)`` from a composed
configuration that names it (``model=toy_mean``, found on an extra config search path), evaluated
on both heads of the tiny world, and tuned by the quality benchmark like every shipped model.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from recsys.data.splits import live_time_split
from recsys.evaluation.selection import QualitySettings, run_quality
from recsys.inputs.tokens import world_context
from recsys.recommenders import MODELS, register, train, unregister
from recsys.recommenders.build import lag_seconds
from recsys.recommenders.candidates import build_candidates, quick_grids
from recsys.recommenders.restore import sectioned
from recsys.recommenders.sequential import SequentialRecommender
from tests.toy_model import TOY, ToyMeanModel

CONF = Path(__file__).parent / "conf"


@pytest.fixture
def toy():
    register(TOY)
    yield TOY
    unregister(TOY.name)


def test_a_registered_toy_model_trains_and_evaluates_from_its_config(toy, tiny_world_dir, tmp_path):
    overrides = [
        f"hydra.searchpath=[file://{CONF}]",
        "model=toy_mean",
        "loss=sasrec",
        "task=sasrec",
        "data=synthetic-tiny",
        f"data.cache_dir={tiny_world_dir.parent}",
        f"run_dir={tmp_path}",
        "trainer.max_epochs=1",
        "trainer.batch_size=32",
        "trainer.num_threads=1",
        "trainer.progress=false",
        "trainer.val_max_users=200",
    ]
    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        cfg = compose(config_name="train", overrides=overrides)
    assert cfg.model.name == "toy_mean" and cfg.model.dim == 16
    metrics = train(cfg)
    for head in ("product", "streamer"):
        for protocol in ("live", "full"):
            assert 0.0 < metrics[f"test/{head}/{protocol}/ndcg@10"] <= 1.0
    assert metrics["train/epochs"] == 1 and (tmp_path / "metrics.json").is_file()


def test_a_registered_toy_model_is_a_quality_benchmark_candidate(toy, tiny_world):
    split = live_time_split(tiny_world, target="room")
    context = world_context(tiny_world)
    (candidate,) = build_candidates(
        split, ["toy_mean"], grids=quick_grids(), protocol="live", context=context
    )
    # Tuned with the first training seed, which each grid point carries.
    assert candidate.name == "toy_mean" and candidate.grid == ({"max_epochs": 2, "seed": 0},)
    (result,) = run_quality(split, [candidate], QualitySettings(protocol="live", seed=0))
    assert result.name == "toy_mean" and 0.0 < result.test["ndcg@10"] <= 1.0
    rec = candidate.build(**candidate.grid[0])
    assert isinstance(rec, SequentialRecommender) and rec.module is ToyMeanModel
    assert rec.head == "streamer"  # a world's room split is scored by the room head


def test_unregistered_models_are_refused_by_name(tiny_world):
    assert "toy_mean" not in MODELS
    split = live_time_split(tiny_world, target="room")
    with pytest.raises(KeyError, match="unknown model 'toy_mean'"):
        build_candidates(split, ["toy_mean"])


def test_lags_are_fractions_of_the_splits_validation_window(tiny_world):
    split = live_time_split(tiny_world, target="product")
    window = split.meta["test_ts"] - split.meta["valid_ts"]
    spec = MODELS["sasrec"]
    task = lag_seconds(spec, {"target_lag": 0.25, "windows": "all"}, split)
    assert task == {"target_lag_s": round(0.25 * window), "windows": "all"}
    assert lag_seconds(MODELS["two_tower"], {"query_lag": 1.0}, split) == {"query_lag_s": window}
    loo = dataclasses.replace(split, meta={"protocol": "leave_one_out"})
    assert lag_seconds(spec, {}, loo) == {"target_lag_s": 0}
    with pytest.raises(ValueError, match="has no time window"):
        lag_seconds(spec, {"target_lag": 0.1}, loo)


def test_configurations_saved_with_one_model_section_are_read_in_todays_layout(tiny_world):
    split = live_time_split(tiny_world, target="product")
    window = split.meta["test_ts"] - split.meta["valid_ts"]
    old = {
        "model": {
            "name": "sasrec",
            "dim": 16,
            "windows": "all",
            "target_lag_s": window / 4,
            "random_target_lag": False,
            "loss": {"name": "bce"},
        },  # fmt: skip
        "data": {"name": "synthetic-tiny"},
    }
    new = sectioned(old, split)
    assert new["model"] == {"name": "sasrec", "dim": 16} and new["loss"] == {"name": "bce"}
    assert new["task"] == {"windows": "all", "target_lag": 0.25} and new["data"] == old["data"]
    assert lag_seconds(MODELS["sasrec"], new["task"], split)["target_lag_s"] == round(window / 4)


def test_build_candidates_says_which_models_the_data_cannot_support(caplog):
    from tests.test_benchmarking import _split

    split = _split()
    assert split.item_features is None
    with caplog.at_level(logging.WARNING, logger="recsys.recommenders.candidates"):
        wanted = ["popularity", "popularity_recent", "content_based"]
        names = [c.name for c in build_candidates(split, wanted, timestamps=False)]
    assert names == ["popularity"]
    assert "popularity_recent skipped: the data has no real timestamps" in caplog.text
    assert "content_based skipped: the data has no item features" in caplog.text
