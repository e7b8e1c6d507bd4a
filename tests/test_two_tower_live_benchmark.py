"""The live-negative step benchmark: on the tiny world, the library's loss equals the
every-pair reference in eval mode, with fewer tower rows, and the report names its command."""

from __future__ import annotations

from two_tower_live import report, run


def test_live_step_benchmark_matches_the_every_pair_reference():
    res = run("tiny", n_batches=2, rounds=1, threads=1)
    assert res["max_abs_loss_gap_eval"] < 1e-4
    assert set(res["heads"]) == {"product", "streamer"}
    for head in res["heads"].values():
        assert head["batches"] == 2
        assert 0 < head["tower_rows_live"] <= head["tower_rows_every_pair"]
        assert head["speedup"] > 0
    rooms = res["heads"]["streamer"]
    assert rooms["tower_rows_live"] < rooms["tower_rows_every_pair"]  # rooms repeat across rows
    assert "| streamer | 2 |" in report(res, "python benchmarks/two_tower_live.py")
