"""benchmarks/coupons.py end to end on the tiny world: the study, then the A/B through
recsys-experiment with its report kept beside the results."""

from __future__ import annotations

import importlib
import json


def test_the_coupon_benchmark_runs_its_ab_through_recsys_experiment(tmp_path, monkeypatch):
    bench = importlib.import_module("coupons")  # benchmarks/coupons.py
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    bench.main(["world.preset=tiny", "world.n_days=4", "world.history_days=1",
                "world.grant_days=2", "world.slates=random", "ab_days=1"])  # fmt: skip
    record = json.loads((tmp_path / "coupons_tiny.json").read_text())
    assert record["ab"]["command"].startswith("recsys-experiment coupons_run=")
    assert set(record["ab"]["metrics"]) == {"gmv", "cost", "net"}
    assert record["ab"]["start_day"] == 3
    assert (tmp_path / "coupons_tiny_experiment" / "report.md").is_file()
    text = (tmp_path / "coupons_tiny.md").read_text()
    assert "A/B through recsys-experiment" in text and "features_ceiling" in text
    assert "Real-time trigger against the truth" in text
    judged = record["trigger_truth"]
    assert judged["tier"] == "flash_product_15" and judged["eligible"] <= judged["hesitations"]
    assert judged["every"]["grants"] == judged["eligible"]


def test_the_information_benchmark_finds_what_the_planted_traits_add(tmp_path, monkeypatch):
    bench = importlib.import_module("coupons_information")  # benchmarks/coupons_information.py
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    bench.main(["world.preset=tiny", "world.n_days=4", "world.history_days=1",
                "world.grant_days=2", "world.slates=random"])  # fmt: skip
    record = json.loads((tmp_path / "coupons_information_tiny.json").read_text())
    member = record["explained"]["member_20"]
    assert member["profile + all three"] > member["profile"] + 0.1
    assert member["train_viewers"] > 0 and member["test_viewers"] > 0
    share = record["sensitivity"]["share of clicks with a coupon on offer"]
    assert 0.0 < share < 1.0
    text = (tmp_path / "coupons_information_tiny.md").read_text()
    assert "| member_20 |" in text and "profile, MLP" in text
