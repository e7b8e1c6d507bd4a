"""The command-line apps: shipped configs compose, and each app runs end to end on tiny data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir, initialize_config_module

from recsys.cli import pipeline, simulate

REPO = Path(__file__).resolve().parents[1]
PACKAGE_CONFIGS = ("simulate", "pipeline")
# Hydra overlays of the package's configs (they extend one with `defaults`); the other files in
# configs/ are benchmark settings, each loaded by its own test (sasrec_public: test_quality_seeds).
OVERLAYS = sorted(
    p.stem for p in (REPO / "configs").glob("*.yaml") if "defaults:" in p.read_text()
)


def _compose_package(name: str, overrides: list[str]):
    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        return compose(config_name=name, overrides=overrides)


@pytest.mark.parametrize("name", PACKAGE_CONFIGS)
def test_package_configs_compose(name, tmp_path):
    cfg = _compose_package(name, [f"out_dir={tmp_path}"])
    assert cfg.out_dir == str(tmp_path)


@pytest.mark.parametrize("name", OVERLAYS)
def test_experiment_overlays_compose(name, tmp_path):
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "configs")):
        cfg = compose(
            config_name=name,
            overrides=["hydra.searchpath=[pkg://recsys.conf]", f"out_dir={tmp_path}"],
        )
    assert cfg.world.preset in ("tiny", "small", "medium", "large")


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_simulate_is_byte_identical_per_seed(tmp_path):
    outs = {}
    for run_name, seed in (("a", 7), ("b", 7), ("c", 8)):
        cfg = _compose_package(
            "simulate",
            [f"out_dir={tmp_path / run_name}", "preset=tiny", f"seed={seed}", "progress=false"],
        )
        simulate.run(cfg)
        outs[run_name] = _files(tmp_path / run_name)
    assert "manifest.json" in outs["a"] and any(k.startswith("truth/") for k in outs["a"])
    assert outs["a"] == outs["b"]
    assert outs["a"]["events/part-00000.parquet"] != outs["c"]["events/part-00000.parquet"]


def test_simulate_console_script(tmp_path):
    exe = Path(sys.executable).with_name("recsys-simulate")
    out = tmp_path / "world"
    proc = subprocess.run(
        [
            str(exe),
            "preset=tiny",
            "seed=7",
            f"out_dir={out}",
            "progress=false",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "manifest.json").is_file() and (out / "users.parquet").is_file()


def test_pipeline_runs_on_tiny_world(tmp_path):
    cfg = _compose_package(
        "pipeline",
        [
            f"out_dir={tmp_path / 'run'}",
            "world.preset=tiny",
            f"world.cache_dir={tmp_path / 'cache'}",
            "quick=true",
            "models=[popularity,item_knn,ease]",
            "two_tower=['model=two_tower','model.dim=16','model.bag_size=20',"
            "'trainer.max_epochs=1','trainer.num_threads=1','trainer.progress=false']",
            "rank=['requests.test=null','requests.eval=60']",
        ],
    )
    results = pipeline.run(cfg)
    run = tmp_path / "run"
    assert (run / "results.json").is_file() and (run / "rank" / "ranker.pt").is_file()
    assert (run / "two_tower" / "index" / "product").is_dir()
    for target in ("product", "room"):
        for model in ("popularity", "item_knn", "ease", "two_tower"):
            test = results["retrieval"][f"{target}/{model}"]["test"]
            assert 0.0 <= test["ndcg@10"] <= 1.0
    lists = results["ranking"]["lists"]
    assert {"two-tower (static)", "learned (pCTCVR)", "blend"} <= set(lists)
    text = pipeline.table(results)
    assert "two_tower" in text and "learned (pCTCVR)" in text
    # The market stage: every arm on the same viewers, the oracle on top, random at the bottom.
    arms = {row["arm"]: row for row in results["market"]["arms"]}
    assert set(arms) == {"pipeline", "random", "popularity", "oracle"}
    assert len({row["viewers"] for row in arms.values()}) == 1
    gmv = {arm: row["true_gmv_per_viewer"] for arm, row in arms.items()}
    assert gmv["oracle"] > max(gmv["pipeline"], gmv["popularity"]) > gmv["random"]
    for row in arms.values():
        assert row["true_gmv_lo"] <= row["true_gmv_per_viewer"] <= row["true_gmv_hi"]
        assert row["ctr_lo"] <= row["ctr"] <= row["ctr_hi"]
    assert arms["popularity"]["gain"] == 0.0 and (run / "market" / "market.md").is_file()
