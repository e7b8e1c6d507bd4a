"""recsys.experiments: assignment, analysis, SRM, sequential tests and power, on synthetic draws.

Exact checks against scipy / statsmodels, and Monte-Carlo checks (fixed seeds) of error rates,
coverage, variance reduction and power, sized to run in seconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from recsys.experiments import (
    Design,
    Experiment,
    Layer,
    Metric,
    Sample,
    always_valid_p,
    analyse,
    assign,
    attach_arms,
    boundary,
    bucket,
    chi2_p_values,
    compare,
    halfwidth,
    heterogeneity,
    holm,
    log_bayes_factor,
    minimum_detectable_effect,
    power,
    sample_size,
    segment_effects,
    sequential,
    sequential_srm,
    srm_power,
    srm_test,
)
from recsys.experiments import synthetic as syn

UNITS = np.arange(100_000, dtype=np.int64) * 7919 + 13  # not consecutive: hashing must not care


def _binomial_ok(count: int, n: int, p: float, sds: float = 4.0) -> bool:
    return abs(count - n * p) <= sds * np.sqrt(n * p * (1 - p))


# --- assignment -------------------------------------------------------------------------------


def test_buckets_are_pinned_and_deterministic():
    # a change of the hash would reshuffle every running experiment: pin its values
    assert bucket([0, 1, 2], "s", "arm").tolist() == pytest.approx(
        [0.1549392568567466, 0.5204123599303896, 0.5250281778527742], abs=0, rel=0
    )
    perm = np.random.default_rng(0).permutation(len(UNITS))
    a = assign(UNITS, "exp-1", [0.5, 0.5])
    assert np.array_equal(assign(UNITS[perm], "exp-1", [0.5, 0.5]), a[perm])
    assert not np.array_equal(assign(UNITS, "exp-2", [0.5, 0.5]), a)  # the salt matters
    with pytest.raises(TypeError, match="integers"):
        bucket(np.array([1.5]), "s", "arm")


def test_weights_give_binomial_proportions_at_100k():
    exp = Experiment("split", {"a": 0.2, "b": 0.3, "c": 0.5})
    counts = np.bincount(exp.assign(UNITS), minlength=3)
    for count, w in zip(counts, exp.weights, strict=True):
        assert _binomial_ok(count, len(UNITS), w)
    assert not srm_test(counts, exp.weights).flagged


@pytest.mark.parametrize(
    ("arms", "message"),
    [
        ({"control": 0.5, "treatment": 0.4}, "sum to 0.9"),
        ({"control": 0.6, "treatment": 0.6}, "sum to 1.2"),
        ({"control": 1.2, "treatment": -0.2}, "must be positive"),
        ({"control": 1.0}, "at least two arms"),
    ],
)
def test_bad_weights_are_refused_with_a_clear_message(arms, message):
    with pytest.raises(ValueError, match=f"experiment 'x'.*{message}"):
        Experiment("x", arms)


def test_ramp_up_keeps_earlier_units_in_their_arm():
    before = None
    for traffic in (0.05, 0.2, 0.5, 1.0):
        arms = Experiment("ramp", {"c": 0.5, "t": 0.5}, traffic=traffic).assign(UNITS)
        assert _binomial_ok(int((arms >= 0).sum()), len(UNITS), traffic)
        if before is not None:
            kept = before >= 0
            assert np.array_equal(arms[kept], before[kept])
        before = arms


def test_layers_are_exclusive_inside_and_orthogonal_across():
    exps = [Experiment(f"ui-{i}", {"c": 0.5, "t": 0.5}) for i in range(3)]
    ui = Layer("ui", tuple(exps), shares=(0.2, 0.3, 0.1))
    coupons = Layer("coupons", (Experiment("coupon", {"none": 0.5, "tier": 0.5}),))
    rows = Design((ui, coupons)).assign(UNITS)
    in_ui = rows[rows["layer"] == "ui"]
    assert not in_ui["unit"].duplicated().any()  # a unit is in at most one experiment
    for exp, share in zip(exps, (0.2, 0.3, 0.1), strict=True):
        assert _binomial_ok(int((in_ui["experiment"] == exp.name).sum()), len(UNITS), share)
    # appending an experiment in the free 40% leaves the running ones untouched
    grown = Layer("ui", (*exps, Experiment("ui-3", {"c": 0.5, "t": 0.5})), (0.2, 0.3, 0.1, 0.4))
    again = Design((grown, coupons)).assign(UNITS)
    assert again[again["experiment"] != "ui-3"].reset_index(drop=True).equals(rows)
    # across layers: the coupon arm is independent of the ui experiment and arm
    both = in_ui.merge(rows[rows["layer"] == "coupons"], on="unit")
    table = pd.crosstab(both["experiment_x"] + both["arm_x"], both["arm_y"])
    assert stats.chi2_contingency(table).pvalue > 0.001


def test_holdout_units_are_in_no_experiment_and_exposures_log_first_sight():
    exp = Experiment("hold", {"c": 0.5, "t": 0.5})
    design = Design.of(exp, holdout=0.1)
    held = design.in_holdout(UNITS)
    assert _binomial_ok(int(held.sum()), len(UNITS), 0.1)
    assigned = design.assign(UNITS)
    assert not np.isin(assigned["unit"], UNITS[held]).any()
    assert len(assigned) == (~held).sum()
    free = UNITS[~held][:3]
    log = design.exposures(np.r_[free[[0, 0, 1]], UNITS[held][:1]], [30, 10, 20, 5])
    assert log.columns.tolist() == ["unit", "experiment", "arm", "ts"]
    assert log["unit"].tolist() == [free[0], free[1]] and log["ts"].tolist() == [10, 20]
    assert len(design.exposures(free[[0, 0]], [1, 2], first_only=False)) == 2
    room = Design.of(Experiment("room-exp", {"c": 0.5, "t": 0.5}, unit="room"))
    assert room.assign(UNITS, unit="viewer").empty and len(room.assign(UNITS, unit="room"))


def test_attach_arms_refuses_missing_exposures_and_conflicts():
    frame = pd.DataFrame({"user_id": [1, 2, 3], "gmv": [1.0, 2.0, 3.0]})
    log = pd.DataFrame({"unit": [1, 2], "experiment": "e", "arm": ["c", "t"], "ts": [0, 1]})
    assert attach_arms(frame, log, "e")["arm"].tolist() == ["c", "t"]
    with pytest.raises(ValueError, match="no rows for experiment 'f'"):
        attach_arms(frame, log, "f")
    clash = pd.concat([log, log.assign(arm="t")])
    with pytest.raises(ValueError, match="two arms"):
        attach_arms(frame, clash, "e")


# --- analysis: exact cross-checks -------------------------------------------------------------


@pytest.mark.parametrize("equal_var", [False, True])
def test_t_test_and_interval_equal_scipy_and_statsmodels(equal_var):
    rng = np.random.default_rng(0)
    t, c = rng.lognormal(0, 1, 300), rng.lognormal(0.1, 0.7, 420)
    est = compare(Sample(t), Sample(c), equal_var=equal_var)
    ref = stats.ttest_ind(t, c, equal_var=equal_var)
    ci = ref.confidence_interval()
    assert est.diff == pytest.approx(t.mean() - c.mean(), abs=1e-12)
    assert (est.p_value, est.df) == pytest.approx((ref.pvalue, ref.df), abs=1e-10, rel=1e-10)
    assert (est.ci_lo, est.ci_hi) == pytest.approx((ci.low, ci.high), abs=1e-10)
    cm = CompareMeans(DescrStatsW(t), DescrStatsW(c))
    usevar = "pooled" if equal_var else "unequal"
    assert (est.ci_lo, est.ci_hi) == pytest.approx(cm.tconfint_diff(usevar=usevar), abs=1e-10)


def test_analyse_frame_holm_and_chi_square_equal_the_libraries():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "arm": rng.choice(["c", "t1", "t2"], 3_000),
            "gmv": rng.exponential(10, 3_000),
            "clicks": rng.poisson(3, 3_000),
        }
    )
    frame["orders"] = rng.binomial(frame["clicks"], 0.1)
    out = analyse(frame, [Metric("gmv", "gmv"), Metric("cvr", "orders", "clicks")], control="c")
    assert len(out) == 4 and out["estimable"].all()
    row = out[(out["metric"] == "gmv") & (out["arm"] == "t2")].iloc[0]
    g = frame.groupby("arm")["gmv"]
    assert row["p_value"] == pytest.approx(
        stats.ttest_ind(g.get_group("t2"), g.get_group("c"), equal_var=False).pvalue, abs=1e-10
    )
    ref = multipletests(out["p_value"], method="holm")
    assert np.allclose(out["p_adjusted"], ref[1], atol=1e-12, rtol=0)
    assert (out["significant"] == ref[0]).all()
    counts = frame["arm"].value_counts().reindex(["c", "t1", "t2"]).to_numpy()
    check = srm_test(counts, [0.4, 0.3, 0.3])
    ref_chi = stats.chisquare(counts, counts.sum() * np.array([0.4, 0.3, 0.3]))
    assert (check.statistic, check.p_value) == pytest.approx(tuple(ref_chi), abs=1e-10)
    assert chi2_p_values(np.stack([counts, counts]), [0.4, 0.3, 0.3]) == pytest.approx(
        [ref_chi.pvalue] * 2, abs=1e-12
    )


def test_holm_leaves_not_estimable_p_values_out_of_the_family():
    p = [0.01, np.nan, 0.04, 0.03, np.nan]
    adjusted, reject = holm(p)
    ref_adj, ref_rej = multipletests([0.01, 0.04, 0.03], method="holm")[1::-1]
    assert adjusted[[0, 2, 3]] == pytest.approx(ref_adj, abs=1e-12)
    assert np.isnan(adjusted[[1, 4]]).all() and not reject[[1, 4]].any()
    assert (reject[[0, 2, 3]] == ref_rej).all()


def test_not_estimable_rows_are_explicit_never_a_silent_nan():
    frame = pd.DataFrame(
        {
            "arm": ["c"] * 4 + ["t"] * 4,
            "gmv": [1.0, 2, 3, 4] + [2.0] * 4,
            "orders": [0] * 8,
            "clicks": [0] * 4 + [1] * 4,
        }
    )
    out = analyse(
        frame,
        [Metric("gmv", "gmv"), Metric("cvr", "orders", "clicks")],
        control="c",
        arms=["c", "t", "empty"],
    )
    assert out["estimable"].tolist() == [True, False, False, False]
    reasons = dict(zip(out["metric"] + "/" + out["arm"], out["reason"], strict=True))
    assert "arm 'empty' has 0 unit(s)" in reasons["gmv/empty"]
    assert "zero denominator" in reasons["cvr/t"]
    assert out.loc[~out["estimable"], ["diff", "p_value"]].isna().all().all()
    assert (out["reason"] != "").sum() == 3


def test_compare_says_why_it_cannot_estimate():
    flat = compare(Sample(np.ones(5)), Sample(np.ones(5)))
    assert not flat.estimable and "no variation" in flat.reason
    zero = compare(Sample(np.array([0.0, 1.0, 2.0])), Sample(np.array([-1.0, 0.0, 1.0])))
    assert zero.estimable and not zero.lift_estimable and "control value is 0" in zero.reason
    assert "arm 'control' has 1 unit" in compare(Sample(np.ones(3)), Sample(np.ones(1))).reason
    with pytest.raises(ValueError, match="NaN or infinite"):
        compare(Sample(np.array([1.0, np.nan])), Sample(np.ones(3)))
    with pytest.raises(ValueError, match="one arm only"):
        compare(Sample(np.ones(3), c=np.ones(3)), Sample(np.ones(3)))


def test_bad_frames_are_refused_with_the_column_named():
    frame = pd.DataFrame({"arm": ["c", "c", "t", "t"], "gmv": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(ValueError, match="column 'gmv' has 1 missing"):
        analyse(frame.assign(gmv=[np.nan] + [1.0] * 3), [Metric("gmv", "gmv")], control="c")
    with pytest.raises(KeyError, match="no column 'clicks'"):
        analyse(frame, [Metric("cvr", "gmv", "clicks")], control="c")
    with pytest.raises(ValueError, match=r"arms \['t'\] in the data"):
        analyse(frame, [Metric("gmv", "gmv")], control="c", arms=["c"])
    with pytest.raises(ValueError, match="several arms"):
        analyse(frame.assign(room=1), [Metric("gmv", "gmv")], control="c", cluster="room")


# --- analysis: Monte-Carlo checks -------------------------------------------------------------


def test_delta_method_ratio_interval_covers_at_95():
    out = syn.ratio_coverage(reps=500)
    assert 0.92 <= out["coverage_diff"]["rate"] <= 0.98
    assert 0.92 <= out["coverage_lift"]["rate"] <= 0.98


def test_cuped_reduces_variance_by_rho_squared_without_bias():
    out = syn.cuped_study(reps=1_000, n_per_arm=1_000, rho=0.7)
    assert out["variance_reduction"] == pytest.approx(out["measured_rho2"], rel=0.10)
    assert out["se2_reduction"] == pytest.approx(out["measured_rho2"], rel=0.05)
    assert abs(out["bias_cuped"]) < 3 * out["bias_mc_se_cuped"]
    assert 0.93 <= out["coverage_cuped"] <= 0.97


def test_cluster_robust_errors_widen_and_cover():
    out = syn.cluster_coverage(reps=400)
    assert out["mean_se_cluster"] > 1.5 * out["mean_se_naive"]
    assert 0.92 <= out["coverage_cluster"]["rate"] <= 0.98
    assert out["coverage_naive"]["rate"] < 0.85


def test_cluster_path_of_analyse_matches_statsmodels_cluster_ols():
    rng = np.random.default_rng(2)
    room, y = syn._rooms(rng, 120, 15.0, 0.5, 0.0)
    frame = pd.DataFrame({"room": room, "y": y, "arm": np.where(room % 2, "t", "c")})
    frame.loc[frame["arm"] == "t", "y"] += 0.2
    est = analyse(frame, [Metric("y", "y")], control="c", cluster="room").iloc[0]
    X = sm.add_constant((frame["arm"] == "t").astype(float).to_numpy())
    fit = sm.OLS(frame["y"].to_numpy(), X).fit(
        cov_type="cluster", cov_kwds={"groups": frame["room"].to_numpy()}
    )
    assert est["diff"] == pytest.approx(fit.params[1], abs=1e-10)
    assert est["se"] == pytest.approx(fit.bse[1], rel=0.02)  # CR1's small-sample factors differ
    assert est["method"] == "delta+cluster" and est["n_arm"] == 60


def test_segment_effects_holm_and_heterogeneity():
    rng = np.random.default_rng(3)
    n = 8_000
    frame = pd.DataFrame({"arm": rng.choice(["c", "t"], n), "seg": rng.choice(list("abcd"), n)})
    lift = np.where((frame["arm"] == "t") & (frame["seg"] == "a"), 0.3, 0.0)
    frame["y"] = rng.normal(0, 1, n) + lift
    out = segment_effects(frame, Metric("y", "y"), "seg", control="c")
    assert out["segment"].tolist() == list("abcd")
    assert np.allclose(out["p_adjusted"], multipletests(out["p_value"], method="holm")[1])
    assert out["significant"].tolist() == [True, False, False, False]
    q = heterogeneity(out).iloc[0]
    assert q["df"] == 3 and q["p_value"] < 1e-3
    one = heterogeneity(out[out["segment"] == "a"]).iloc[0]
    assert not one["estimable"] and one["reason"]
    with pytest.raises(ValueError, match="2 units have no value"):
        segment_effects(frame.assign(seg=[None, None] + ["a"] * (n - 2)), Metric("y", "y"), "seg")


# --- SRM --------------------------------------------------------------------------------------


def test_srm_flags_a_half_point_bug_and_rarely_a_correct_split():
    # 100k units per arm: at 100k in all no test with <= 1% false alarms reaches 90% power
    bug = syn.srm_study(reps=1_000, n_total=200_000, true_share=0.505)
    fine = syn.srm_study(reps=2_000, n_total=200_000, true_share=0.5)
    assert bug["chi2_final"]["rate"] >= 0.9
    assert fine["chi2_final"]["rate"] <= 0.015
    assert fine["sequential_any_look"]["rate"] <= 0.015  # valid though read every day
    assert srm_power(200_000, [0.5, 0.5], [0.505, 0.495]) == pytest.approx(
        bug["chi2_final"]["rate"], abs=0.03
    )
    assert srm_power(100_000, [0.5, 0.5], [0.505, 0.495]) < 0.75


def test_sequential_srm_bayes_factor_is_the_beta_binomial_ratio():
    counts, w, conc = np.array([5_100, 4_900]), np.array([0.5, 0.5]), 1_000.0
    ref = stats.betabinom.logpmf(5_100, 10_000, conc * 0.5, conc * 0.5) - stats.binom.logpmf(
        5_100, 10_000, 0.5
    )
    assert log_bayes_factor(counts, w, conc) == pytest.approx(ref, abs=1e-8)
    looks = np.cumsum(np.full((5, 2), [700, 300]), axis=0)
    seq = sequential_srm(looks, w)
    assert seq["flagged"].tolist() == sorted(seq["flagged"].tolist())  # once flagged, stays
    assert seq["flagged"][-1] and (np.diff(seq["p_value"]) <= 0).all()


# --- sequential -------------------------------------------------------------------------------


def test_confidence_sequence_survives_daily_peeking_where_the_z_test_does_not():
    out = syn.peeking_study(n_experiments=2_000, looks=14, per_look=100)
    seq, naive = out["sequential_any_look"], out["naive_any_look"]
    assert seq["rate"] <= 0.05 + 2 * seq["mc_se"]
    assert naive["rate"] > 0.12  # about a fifth: peeking inflates the 5% fourfold


def test_always_valid_p_agrees_with_the_boundary():
    n = np.array([200.0, 2_000.0, 20_000.0])
    var = 4.0 / n
    half = halfwidth(var, n)
    assert always_valid_p(half, var, n) == pytest.approx([0.05] * 3, rel=1e-9)
    assert (always_valid_p(half * 1.1, var, n) < 0.05).all()
    table = boundary(n)
    assert (table["z_sequential"] > table["z_fixed"]).all()
    est = compare(
        Sample(np.random.default_rng(4).normal(0.1, 1, 2_000)),
        Sample(np.random.default_rng(5).normal(0, 1, 2_000)),
    )
    seq = sequential(est)
    assert seq.ci_lo < est.ci_lo and seq.ci_hi > est.ci_hi and seq.lift_lo < est.lift_lo
    assert seq.p_value > est.p_value and seq.method == "welch+sequential"


# --- power ------------------------------------------------------------------------------------


def test_power_equals_statsmodels_and_inverts():
    effects = np.array([0.05, 0.1, 0.2])
    assert power(effects, 800, 1.0) == pytest.approx(
        TTestIndPower().power(effects, 800, 0.05), abs=1e-10
    )
    mde = minimum_detectable_effect(800, 2.0, target=0.8)
    assert power(mde, 800, 2.0) == pytest.approx(0.8, abs=1e-9)
    assert minimum_detectable_effect(800, 2.0, rho=0.6) == pytest.approx(0.8 * mde, rel=0.01)
    n = sample_size(0.1, 1.0)
    assert power(0.1, n, 1.0) >= 0.8 > power(0.1, n - 1, 1.0)


def test_power_matches_simulated_power_within_5_points():
    for row in syn.power_study(effects=(0.05, 0.1, 0.15), n_per_arm=1_000, reps=1_500):
        assert row["predicted"] == pytest.approx(row["simulated"]["rate"], abs=0.05)
