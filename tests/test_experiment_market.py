"""A/B tests inside the market: routing by the one assignment function, exposure logs, the
counterfactual truth, `recsys-experiment` end to end on the tiny world, and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from recsys.experiments import Experiment, ab_report, run_experiment, unit_table, write_report
from recsys.experiments.report import markdown
from recsys.market import Market, MarketConfig, Policy, PopularityPolicy, RandomPolicy, Slates
from tests.conftest import compose_config

TINY = MarketConfig(preset="tiny", seed=0, start_day=1)


class _Idle(Policy):
    """Shows nothing."""

    name = "idle"

    def recommend(self, requests, market):
        empty = np.full((len(requests), requests.k), -1, dtype=np.int64)
        return Slates(empty, empty.copy())


def _cli(tmp_path, world_dir, *extra):
    from recsys.cli.experiment import run

    cfg = compose_config("experiment", ["world.preset=tiny", f"world.cache_dir={world_dir.parent}",
                                        "days=2", f"out_dir={tmp_path}", *extra])  # fmt: skip
    return run(cfg)


@pytest.fixture(scope="module")
def viewer_run(tiny_world_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ab")
    return out, _cli(out, tiny_world_dir)


def test_draw_seed_varies_the_markets_draws_on_one_world(tmp_path):
    runs = {}
    for name, seed in (("a", None), ("b", 0), ("c", 5)):
        market = Market(MarketConfig(preset="tiny", seed=0, start_day=2, draw_seed=seed),
                        tmp_path / name)  # fmt: skip
        market.run(RandomPolicy(seed=0))
        runs[name] = pd.read_parquet(tmp_path / name / "requests")
    pd.testing.assert_frame_equal(runs["a"], runs["b"])  # None: the world's seed
    assert not runs["a"]["user_id"].equals(runs["c"]["user_id"])
    users = [pd.read_parquet(tmp_path / n / "users.parquet") for n in ("a", "c")]
    pd.testing.assert_frame_equal(*users)  # the same world


def test_each_viewer_gets_its_arms_policy_and_every_request_is_an_exposure(tmp_path):
    exp = Experiment("split", {"control": 0.5, "treatment": 0.5})
    market = Market(TINY, tmp_path)
    run_experiment(market, exp, {"control": _Idle(), "treatment": RandomPolicy(seed=1)}, days=1)
    requests = pd.read_parquet(tmp_path / "requests")
    exposures = pd.read_parquet(tmp_path / "exposures")
    assert set(exposures["unit"]) == set(requests["user_id"])
    assert not exposures["unit"].duplicated().any()  # one row per unit and day
    arm = np.array(exp.arm_names)[exp.assign(exposures["unit"].to_numpy())]
    assert (exposures["arm"].to_numpy() == arm).all()  # the one assignment function
    shown = pd.read_parquet(tmp_path / "impressions")["user_id"].unique()
    treated = set(exposures.loc[exposures["arm"] == "treatment", "unit"])
    assert len(shown) and set(shown) <= treated  # the idle control showed nothing
    truth = pd.read_parquet(tmp_path / "truth" / "arms")
    assert set(truth["arm"]) == {"treatment"}  # the idle arm's counterfactual has no cards
    assert set(truth["user_id"]) == set(requests["user_id"])  # random answered everyone
    # The control's cards are zero denominators: explicit rows, never a silent NaN.
    report = ab_report(tmp_path, exp)
    ctr = report.kpis.set_index(["metric", "arm"]).loc[("ctr", "control")]
    assert not ctr["estimable"] and "zero denominator" in ctr["reason"]
    assert "not estimable" in markdown(report)


def test_a_rooms_arm_changes_its_products_and_never_its_slots(tmp_path):
    exp = Experiment("rooms", {"control": 0.5, "treatment": 0.5}, unit="room")
    market = Market(TINY, tmp_path)
    run_experiment(market, exp, {"control": PopularityPolicy(), "treatment": RandomPolicy()},
                   days=1)  # fmt: skip
    key = ["request_id", "position"]
    shown = pd.read_parquet(tmp_path / "impressions").set_index(key).sort_index()
    truth = pd.read_parquet(tmp_path / "truth" / "arms")
    layout = truth.loc[truth["arm"] == "control"].set_index(key).sort_index()
    assert shown.index.equals(layout.index)
    assert (shown["streamer_id"] == layout["streamer_id"]).all()  # the control's slots
    arm = pd.Series(np.array(exp.arm_names)[exp.assign(shown["streamer_id"].to_numpy())],
                    index=shown.index)  # fmt: skip
    exposures = pd.read_parquet(tmp_path / "exposures")
    assert dict(zip(exposures["unit"], exposures["arm"], strict=True)) == dict(
        zip(shown["streamer_id"], arm, strict=True))  # fmt: skip
    units = unit_table(tmp_path, exp)
    assert units.groupby("streamer_id")["arm"].nunique().max() == 1
    assert set(units["arm"]) == {"control", "treatment"}


def test_recsys_experiment_writes_its_report_with_the_truth(viewer_run):
    out, result = viewer_run
    for name in ("report.md", "report.json", "sequential.png"):
        assert (out / name).stat().st_size > 0
    record = json.loads((out / "report.json").read_text())  # written with allow_nan=False
    assert record["has_truth"] and record["days"] == [1, 2]
    effects = pd.DataFrame(record["effects"])
    assert set(effects["adjustment"]) == {"none", "cuped"}
    assert set(effects["metric"]) == {"ctr", "cvr", "gmv_per_viewer", "aov"}
    assert effects["true_effect"].notna().all() and effects["estimable"].all()
    assert record["srm"]["estimable"] and not record["srm"]["flagged"]
    assert [look["day"] for look in record["looks"]] == [1, 2]
    for look in record["looks"]:  # the always-valid sequence is wider than the fixed interval
        assert look["cs_lo"] < look["ci_lo"] < look["ci_hi"] < look["cs_hi"]
    kpis = result["report"].kpis
    assert (kpis["true_value"] > 0).all() and (kpis["units"] > 100).all()


def test_the_report_reads_logs_without_the_markets_truth(viewer_run, tmp_path):
    out, _ = viewer_run
    logs = tmp_path / "logs"
    shutil.copytree(out / "market", logs, ignore=shutil.ignore_patterns("truth"))
    exp = Experiment("ab", {"control": 0.5, "treatment": 0.5})
    report = ab_report(logs, exp)
    assert not report.has_truth and report.effects["estimable"].all()
    assert "unknown" in markdown(report)
    paths = write_report(report, tmp_path / "report")
    json.loads(paths["json"].read_text())


def test_bad_input_gets_a_clear_error_or_an_explicit_row(viewer_run, tiny_world_dir, tmp_path):
    from recsys.cli.experiment import experiment_of

    bad = compose_config("experiment", ["experiment.weights.control=0.6"])
    with pytest.raises(ValueError, match="sum to 1.1"):
        experiment_of(bad)
    out, _ = viewer_run
    exp = Experiment("ab", {"control": 0.5, "treatment": 0.5})
    logs = tmp_path / "logs"
    shutil.copytree(out / "market", logs)
    (logs / "exposures" / "part-00002.parquet").unlink()
    with pytest.raises(ValueError, match=r"no exposures on days \[2\]"):
        ab_report(logs, exp)
    shutil.rmtree(logs / "exposures")
    with pytest.raises(FileNotFoundError, match="no exposure log"):
        ab_report(logs, exp)
    # Every unit logged in the control: the treatment has no units.
    shutil.copytree(out / "market" / "exposures", logs / "exposures")
    for part in (logs / "exposures").glob("*.parquet"):
        pd.read_parquet(part).assign(arm="control").to_parquet(part)
    report = ab_report(logs, exp)
    assert not report.effects["estimable"].any()
    assert report.effects["reason"].str.contains("'treatment' has 0 unit").all()
    assert report.srm["flagged"]
    json.loads(write_report(report, tmp_path / "r")["json"].read_text())


def test_the_pipeline_arms_run_the_trained_model(trained_two_tower, tmp_path):
    from recsys.cli.index import build_indexes

    ckpt, cache = trained_two_tower
    build_indexes(compose_config("index", [f"checkpoint={ckpt}", f"cache_dir={cache}"]))
    world = cache / "tiny-0"
    result = _cli(tmp_path, world, "arm@control=two_tower", "arm@treatment=pipeline",
                  f"control.checkpoint={ckpt}", f"treatment.checkpoint={ckpt}",
                  "treatment.ranker=null", "start_day=1", "days=1")  # fmt: skip
    kpis = result["report"].kpis
    assert (kpis["units"] > 100).all() and kpis.loc[kpis["metric"] == "ctr", "estimable"].all()
    slates = pd.read_parquet(tmp_path / "market" / "truth" / "arms")
    by_arm = {a: g.set_index(["request_id", "position"])["product_id"].sort_index()
              for a, g in slates.groupby("arm")}  # fmt: skip
    assert not by_arm["control"].equals(by_arm["treatment"])  # two orderings of one model


def test_the_oracle_arm_config_builds(tiny_world_dir, tmp_path):
    from recsys.cli.experiment import build_policy

    cfg = compose_config("experiment", ["arm@treatment=oracle"])
    market = Market(TINY, tmp_path)
    policy = build_policy(cfg.treatment, cfg, market, 0, [])
    assert policy.name == "oracle" and policy.truth is market.truth


def test_units_outside_the_traffic_are_left_out_and_lost_exposures_refused(tmp_path):
    exp = Experiment("ramp", {"control": 0.5, "treatment": 0.5}, traffic=0.4)
    market = Market(TINY, tmp_path)
    run_experiment(market, exp, {"control": PopularityPolicy(), "treatment": RandomPolicy()},
                   days=1, counterfactual=False)  # fmt: skip
    viewers = pd.read_parquet(tmp_path / "requests")["user_id"].unique()
    inside = viewers[exp.assign(viewers) >= 0]
    units = unit_table(tmp_path, exp)
    assert set(units["user_id"]) == set(inside) and len(inside) < 0.6 * len(viewers)
    assert not (tmp_path / "truth" / "arms").exists()
    part = tmp_path / "exposures" / "part-00001.parquet"
    pd.read_parquet(part).iloc[1:].to_parquet(part)  # one exposed viewer's row lost
    with pytest.raises(ValueError, match="in the logs but have no exposure"):
        unit_table(tmp_path, exp)
