"""`recsys-loop` end to end on the tiny world: rounds, arms on the same viewers, outputs."""

from __future__ import annotations

import json

from recsys.cli.loop import ARMS, run
from tests.conftest import compose_config


def test_the_loop_runs_rounds_and_writes_its_table_plot_and_scalars(tiny_world_dir, tmp_path):
    cfg = compose_config("loop", [
        "world.preset=tiny", f"world.cache_dir={tiny_world_dir.parent}", "rounds=2", "days=1",
        "first_split.valid_frac=0.35", "first_split.test_frac=0.35", f"out_dir={tmp_path}",
        "two_tower=['model=two_tower_live','model.dim=16','model.bag_size=20',"
        "'trainer.max_epochs=1','trainer.batch_size=64','trainer.num_threads=1',"
        "'trainer.progress=false']",
    ])  # fmt: skip
    result = run(cfg)
    rows = result["rounds"]
    assert [(r["round"], r["arm"]) for r in rows] == [(i, a) for i in range(2) for a in ARMS]
    for i in range(2):
        gmv = {r["arm"]: r["true_gmv_per_viewer"] for r in rows if r["round"] == i}
        assert gmv["random"] < gmv["learning"] < gmv["oracle"]
        assert len({r["viewers"] for r in rows if r["round"] == i}) == 1  # the same viewers
    # Round 0: learning and frozen are the same model on the same viewers.
    assert result["gain_vs_frozen"][0]["gain"] == 0.0
    assert rows[0]["true_gmv_per_viewer"] == rows[1]["true_gmv_per_viewer"]
    for name in ("loop.json", "loop.md", "loop.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((tmp_path / "loop.json").read_text())["plot"].endswith("loop.png")
    # Round 1 retrained on the world's first day and the learning market's logged day.
    assert (tmp_path / "round_1" / "learning_data" / "events" / "part-00000.parquet").is_symlink()
    assert (tmp_path / "round_1" / "frozen_data" / "events" / "part-00000.parquet").is_symlink()
    assert (tmp_path / "round_1" / "two_tower" / "best.pt").is_file()
