"""Every command on a platform's own data: a world folder from recsys-ingest (no planted truth)
and plain interaction files, with no code changed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recsys.cli import evaluate, index, ingest, pipeline, profile, rank, serve
from recsys.cli.pipeline import compose_job
from recsys.datasets import data_root, make_split
from recsys.recommenders.experiment import train

REPO = Path(__file__).resolve().parents[1]
TINY_TWO_TOWER = ["model=two_tower", "model.dim=16", "model.bag_size=20", "trainer.max_epochs=1",
                  "trainer.batch_size=64", "trainer.num_threads=1", "trainer.progress=false",
                  "trainer.val_max_users=200"]  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


def _export_example(world: Path, out: Path) -> None:
    path = REPO / "experiments" / "export_world.py"
    spec = importlib.util.spec_from_file_location("export_world", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.export_example(str(world), str(out), "csv")


@pytest.fixture(scope="module")
def ingested(tiny_world_dir, tmp_path_factory) -> Path:
    """The tiny world exported with another platform's names and ingested back (user ids
    kept, so that training on it can be compared with training on the original)."""
    root = tmp_path_factory.mktemp("own")
    _export_example(tiny_world_dir, root / "raw")
    # Without the export's consent log: its opt-outs would keep viewers out of the profiles
    # compared with the simulated world's, which has none.
    overrides = ["tables=example", "pseudonymise=false", "progress=false", "~tables.consent"]
    cfg = compose_job("ingest", [f"source={root / 'raw'}", f"out_dir={root / 'world'}",
                                 *overrides])  # fmt: skip
    assert ingest.run(cfg).n_rejected == 0
    return root / "world"


def _train(world: Path, run_dir: Path) -> dict:
    cfg = compose_job("train", ["data=world", f"data.path={world}", f"run_dir={run_dir}",
                                *TINY_TWO_TOWER])  # fmt: skip
    return train(cfg)


@pytest.fixture(scope="module")
def trained(ingested, tiny_world_dir, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    runs = tmp_path_factory.mktemp("runs")
    return {name: (runs / name, _train(folder, runs / name))
            for name, folder in (("original", tiny_world_dir), ("ingested", ingested))}  # fmt: skip


def _metrics(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k.startswith(("valid/", "test/", "train/best"))}


def test_round_trip_trains_and_evaluates_to_the_same_metrics(trained, tmp_path):
    (original, a), (ingested, b) = trained["original"], trained["ingested"]
    assert _metrics(a) == _metrics(b) and "test/product/live/ndcg@10" in _metrics(a)
    scores = [evaluate.run(compose_job("evaluate", [f"checkpoint={run}", "max_users=300"]))
              for run in (original, ingested)]  # fmt: skip
    assert scores[0] == scores[1] and len(scores[0]) > 10


def test_index_rank_and_serve_on_an_ingested_world(trained, ingested, tmp_path):
    run = trained["ingested"][0]
    heads = index.build_indexes(compose_job("index", [f"checkpoint={run}"]))
    assert set(heads) == {"product", "streamer"}
    cfg = compose_job("rank", [f"checkpoint={run}", f"run_dir={tmp_path / 'rank'}",
                               "requests.test=400", "requests.eval=100"])  # fmt: skip
    record = rank.run(cfg)
    assert record["outcomes"] == "logged" and "no planted truth" in record["truth"]
    lists = record["lists"]["lists"]
    assert {"two-tower (static)", "blend", "learned (pCTCVR)"} <= set(lists)
    for row in lists.values():
        assert 0.0 <= row["logged_click_hr"]["value"] <= 1.0
    assert "not estimable" in record["lists"]["inverse_propensity"]
    app = serve.build_app(
        compose_job(
            "serve", [f"checkpoint={run}", f"ranker_checkpoint={tmp_path / 'rank/ranker.pt'}"]
        )
    )
    user = int(pd.read_parquet(ingested / "users.parquet")["user_id"].iloc[0])
    with TestClient(app) as client:
        answer = client.get(f"/recommend?user={user}&k=5")
    items = answer.json()["items"]
    assert answer.status_code == 200 and {"room", "product"} == {i["kind"] for i in items}


def test_profile_skips_truth_accuracy_without_truth(ingested, tiny_world_dir, tmp_path):
    summary = profile.run(compose_job("profile", ["data=world", f"data.path={ingested}",
                                                  f"out_dir={tmp_path / 'a'}"]))  # fmt: skip
    assert summary["accuracy"].startswith("skipped:") and summary["profiled_users"] > 0
    simulated = profile.run(compose_job("profile", ["data=world", f"data.path={tiny_world_dir}",
                                                    f"out_dir={tmp_path / 'b'}"]))  # fmt: skip
    assert isinstance(simulated["accuracy"], dict) and (tmp_path / "b" / "profile.json").is_file()
    assert simulated["top_tags"] == summary["top_tags"]


@pytest.mark.slow
def test_pipeline_runs_on_an_ingested_world(ingested, tmp_path):
    cfg = compose_job("pipeline", [f"out_dir={tmp_path}", f"world.path={ingested}", "quick=true",
                                   "models=[popularity,item_knn]",
                                   "two_tower=[" + ",".join(f"'{o}'" for o in TINY_TWO_TOWER) + "]",
                                   "rank=['requests.test=400','requests.eval=60']"])  # fmt: skip
    results = pipeline.run(cfg)
    assert results["market"] is None and results["ranking"]["outcomes"] == "logged"
    assert 0.0 <= results["retrieval"]["product/two_tower"]["test"]["ndcg@10"] <= 1.0
    assert "learned (pCTCVR)" in pipeline.table(results)


def _interactions(tmp_path: Path) -> tuple[Path, Path]:
    """The same interactions as 'user item' lines and as a CSV table with its own names."""
    rng = np.random.default_rng(0)
    user = np.repeat(np.arange(1, 61), 8)
    item = np.concatenate([rng.permutation(np.arange(1, 40))[:8] for _ in range(60)])
    lines = tmp_path / "ratings.txt"
    lines.write_text("".join(f"{u} {i}\n" for u, i in zip(user, item, strict=True)))
    table = tmp_path / "ratings.csv"
    pd.DataFrame({"uid": user, "sku": item, "when": np.arange(len(user))}).to_csv(
        table, index=False
    )
    return lines, table


def test_interaction_files_by_path_give_the_same_split(tmp_path):
    lines, table = _interactions(tmp_path)
    a, _ = make_split("x", path=lines, format="user_item_lines")
    b, timed = make_split("x", path=table, format="table",
                          columns={"user": "uid", "item": "sku", "time": "when"})  # fmt: skip
    assert timed
    assert np.array_equal(a.train.items, b.train.items)
    assert np.array_equal(a.train.indptr, b.train.indptr)
    for part in ("valid", "test"):
        x, y = getattr(a, part), getattr(b, part)
        assert np.array_equal(x.user, y.user) and np.array_equal(x.item, y.item)


def test_train_on_an_interaction_file(tmp_path):
    _, table = _interactions(tmp_path)
    cfg = compose_job("train", ["data=interactions", f"data.path={table}", "data.format=table",
                                "data.columns={user: uid, item: sku, time: when}",
                                "model=sasrec", "model.dim=16", "model.maxlen=10",
                                "trainer.max_epochs=1", "trainer.progress=false",
                                f"run_dir={tmp_path / 'run'}"])  # fmt: skip
    metrics = train(cfg)
    assert 0.0 <= metrics["test/product/full/ndcg@10"] <= 1.0


@pytest.mark.slow
@pytest.mark.shared_data
def test_quality_benchmark_by_path_reproduces_the_registered_run(tmp_path):
    import quality

    path = data_root() / "ml-100k-recbole" / "ml-100k.inter"
    if not path.is_file():
        pytest.skip(f"{path} not present (set RECSYS_DATA_DIR)")
    args = ["--protocol", "full", "--models", "popularity", "ease", "--quick"]
    registered = quality.main(["--dataset", "ml-100k", "--out-dir", str(tmp_path / "a"), *args])
    by_path = quality.main(["--data-path", str(path), "--out-dir", str(tmp_path / "b"), *args])
    for name, model in registered["models"].items():
        assert by_path["models"][name]["test"] == model["test"], name
