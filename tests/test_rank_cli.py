"""recsys-rank: two-tower scores of candidate pairs, the saved ranker, the job on a tiny world."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_module

from recsys.cli.rank import run, settings_from
from recsys.models.esmm import ESMM, ESMMConfig
from recsys.ranking import BlendWeights, FeatureMatrix, Ranker
from recsys.ranking.experiment import (
    BLEND,
    LEARNED,
    NO_KOL,
    NO_TT,
    POPULARITY,
    RANDOM,
    TRUTH,
    TWO_TOWER,
)
from recsys.ranking.ranker_io import load_ranker, save_ranker
from recsys.ranking.upstream import two_tower_scores
from recsys.recommenders.experiment import train
from recsys.recommenders.restore import restore

pytestmark = pytest.mark.usefixtures("one_thread")


def _compose(name: str, overrides: list[str]):
    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        return compose(config_name=name, overrides=overrides)


@pytest.fixture(scope="module")
def trained(tiny_world_dir, tmp_path_factory) -> tuple[Path, Path]:
    """A two-tower trained for one epoch on the tiny world: (run folder, world cache)."""
    cache, run_dir = tiny_world_dir.parent, tmp_path_factory.mktemp("two_tower")
    overrides = ["model=two_tower_live", "data=synthetic-tiny", f"data.cache_dir={cache}",
                 f"run_dir={run_dir}", "model.dim=16", "model.bag_size=20",
                 "trainer.max_epochs=1", "trainer.batch_size=64", "trainer.num_threads=1",
                 "trainer.progress=false"]  # fmt: skip
    train(_compose("train", overrides))
    return run_dir, cache


@pytest.fixture(scope="module")
def restored(trained):
    run_dir, cache = trained
    return restore(run_dir, cache_dir=str(cache))


# ---------------------------------------------------------------- two-tower scores of pairs


def test_two_tower_scores_match_request_scores(restored):
    view = restored.recommender.for_head("product")
    vocabs = view.context.vocabs
    users, products = vocabs.user.ids[[3, 10, 50]], vocabs.product.ids[[0, 5, 7, 40, 90]]
    ts = restored.data.train_split.meta["test_ts"] + np.array([10, 500, 9000])
    unknown_user, unknown_product = int(users.max()) + 1, int(products.max()) + 12345
    # Rows interleave requests; request 7 is a viewer the model never saw.
    pairs = pd.DataFrame(
        {
            "request_id": [3, 5, 3, 7, 5, 3, 7, 5],
            "product_id": [products[0], products[1], products[2], products[3], products[4],
                           unknown_product, products[0], products[0]],
        }
    )  # fmt: skip
    who = {3: (users[0], ts[0]), 5: (users[1], ts[1]), 7: (unknown_user, ts[2])}
    pairs["user_id"] = [who[r][0] for r in pairs["request_id"]]
    pairs["ts"] = [who[r][1] for r in pairs["request_id"]]
    got = two_tower_scores(restored.recommender, pairs, chunk_requests=2)
    assert got.dtype == np.float32 and np.isnan(got[5]) and np.isfinite(np.delete(got, 5)).all()
    for request, (user, t) in who.items():
        rows = np.flatnonzero((pairs["request_id"] == request).to_numpy())
        rows = rows[pairs["product_id"].to_numpy()[rows] != unknown_product]
        codes = vocabs.product.encode(pairs["product_id"].to_numpy()[rows])
        want = view.request_scores(vocabs.user.encode(np.array([user])), np.array([t]), codes)
        np.testing.assert_allclose(got[rows], want[0], rtol=1e-5, atol=1e-5)
    assert got[3] != got[6]  # not one shared score per request


def test_two_tower_scores_reject_a_request_at_two_times(restored):
    vocabs = restored.recommender.context.vocabs
    pairs = pd.DataFrame({"request_id": [0, 0], "user_id": vocabs.user.ids[[1, 1]],
                          "ts": [100, 200], "product_id": vocabs.product.ids[[0, 1]]})  # fmt: skip
    with pytest.raises(ValueError, match="row 1: request 0 has more than one ts"):
        two_tower_scores(restored.recommender, pairs)


# ---------------------------------------------------------------- saved rankers


def _features(n: int = 50, seed: int = 0) -> FeatureMatrix:
    names = ("retrieval_score", "in_cart", "log_price", "kol_presenting_now")
    values = np.random.default_rng(seed).normal(size=(n, len(names))).astype(np.float32)
    return FeatureMatrix(names, values)


def test_learned_ranker_round_trips(tmp_path):
    x = _features()
    torch.manual_seed(0)
    model = ESMM(ESMMConfig(n_features=3, hidden=(8, 4)))
    model.set_standardisation(x.values[:, :3] * 3 + 1)
    ranker = Ranker.learned(model, x.names[:3], objective="gmv", k=4)
    path = save_ranker(ranker, tmp_path, {"world": "tiny", "auc": [0.5, 0.75]})
    assert path == tmp_path / "ranker.pt"
    assert torch.load(path, weights_only=True)["mode"] == "learned"  # plain values only
    loaded, meta = load_ranker(path)
    assert meta == {"world": "tiny", "auc": [0.5, 0.75]}
    assert (loaded.mode, loaded.k, loaded.objective) == ("learned", 4, "gmv")
    assert loaded.model_features == x.names[:3]
    for key, value in ranker.score(x).items():
        np.testing.assert_array_equal(loaded.score(x)[key], value)


def test_blend_ranker_round_trips(tmp_path):
    x = _features()
    ranker = Ranker.blended(BlendWeights((("retrieval_score", 0.5), ("in_cart", -2.0))), k=3)
    loaded, meta = load_ranker(save_ranker(ranker, tmp_path / "blend.pt"))
    assert meta == {} and loaded.blend == ranker.blend and loaded.k == 3
    np.testing.assert_array_equal(loaded.score(x)["score"], ranker.score(x)["score"])


def test_save_ranker_refuses_non_plain_meta(tmp_path):
    ranker = Ranker.blended(BlendWeights((("in_cart", 1.0),)))
    with pytest.raises(TypeError, match=r"meta\.scores\[1\] has type float32"):
        save_ranker(ranker, tmp_path, {"scores": [1.0, np.float32(2.0)]})
    with pytest.raises(FileNotFoundError):
        load_ranker(tmp_path / "missing")


# ---------------------------------------------------------------- the job


def test_shipped_rank_config_composes(tmp_path):
    cfg = _compose("rank", [f"run_dir={tmp_path}"])
    settings = settings_from(cfg)
    assert cfg.checkpoint is None and cfg.world.name == "synthetic-small"
    assert (settings.mode, settings.k, settings.eval_requests) == ("learned", 10, 2000)
    assert settings.esmm_seeds == (0,) and settings.train_requests is None


def _check_record(record: dict, names: set[str], run_dir: Path) -> None:
    assert json.loads((run_dir / "ranking.json").read_text()) == record
    lists = record["lists"]["lists"]
    assert set(lists) == names
    for row in lists.values():
        for metric in ("ctr", "cvr", "ctcvr", "ndcg@10"):
            assert row[metric]["low"] <= row[metric]["value"] <= row[metric]["high"]
    assert lists[TRUTH]["ndcg@10"]["value"] == pytest.approx(1.0)
    assert lists[TRUTH]["ctcvr"]["value"] >= max(r["ctcvr"]["value"] for r in lists.values())


def test_rank_job_on_tiny_world(trained, tmp_path):
    run_dir, cache = trained
    cfg = _compose("rank", [f"checkpoint={run_dir}", f"cache_dir={cache}", f"run_dir={tmp_path}",
                            "requests.test=null", "requests.eval=60"])  # fmt: skip
    record = run(cfg)
    names = {RANDOM, POPULARITY, TWO_TOWER, BLEND, f"{BLEND} without KOL", LEARNED, NO_KOL, NO_TT,
             TRUTH}  # fmt: skip
    _check_record(record, names, tmp_path)
    diffs = record["lists"]["differences"]
    assert {f"{n} - {TWO_TOWER}" for n in names - {TWO_TOWER}} <= set(diffs)
    assert f"{LEARNED} - {NO_KOL}" in diffs and "seed 0" in record["lists"]["kol_ablation_by_seed"]
    w = record["windows"]
    assert w["train"][1] == w["valid"][0] and w["valid"][1] == w["test"][0]
    ranker, meta = load_ranker(tmp_path)
    assert ranker.mode == "learned" and meta["checkpoint"] == record["checkpoint"]
    assert ranker.model_features == tuple(record["model_features"])
    assert "retrieval_score" in ranker.model_features
    assert "sequential_score" not in ranker.model_features


def test_rank_command_without_two_tower_saves_the_blend(tiny_world_dir, tmp_path):
    args = ["world.name=synthetic-tiny", f"cache_dir={tiny_world_dir.parent}", "ranker.mode=blend",
            "requests.test=null", "requests.eval=40", f"hydra.run.dir={tmp_path}"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "recsys.cli.rank", *args], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| ranking | CTR % |" in proc.stdout and "ranker (blend) ->" in proc.stdout
    record = json.loads((tmp_path / "ranking.json").read_text())
    names = {RANDOM, POPULARITY, BLEND, f"{BLEND} without KOL", LEARNED, NO_KOL, TRUTH}
    _check_record(record, names, tmp_path)
    assert record["lists"]["reference"] == POPULARITY
    assert "retrieval_score" not in record["model_features"]
    ranker, _ = load_ranker(tmp_path / "ranker.pt")
    assert ranker.mode == "blend" and ranker.blend == BlendWeights.from_yaml()
