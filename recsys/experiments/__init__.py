"""A/B experimentation: assignment, analysis, sample-ratio checks, sequential tests, power.

    import numpy as np
    from recsys.experiments import Design, Experiment, Metric, analyse, srm_test

    exp = Experiment("ranker-v2", {"control": 0.5, "treatment": 0.5}, traffic=0.2)
    design = Design.of(exp, holdout=0.05)
    arms = design.assign(np.arange(100_000))          # unit, layer, experiment, arm
    log = design.exposures(viewer_ids, request_ts)    # unit, experiment, arm, first ts
    table = analyse(per_viewer, [Metric("gmv", "gmv", covariate="gmv_pre"),
                                 Metric("cvr", "orders", "clicks")], arms=exp.arm_names)
    srm_test(arms.groupby("arm").size().reindex(exp.arm_names, fill_value=0), exp.weights)

``assignment``: salted hashing of viewers or rooms to arms, layers (mutually exclusive inside,
orthogonal across), a global holdout, ramp-up without reshuffling, exposure logs.
``analysis``: mean and ratio metrics (delta method), Welch tests and intervals, absolute and
relative lift, CUPED, cluster-robust errors, Holm, explicit not-estimable rows.
``smallsample``: CR2 variances and Bell-McCaffrey degrees of freedom of a ratio of sums (room
clusters of unequal size, denominators held by few units).
``segments``: effects by segment with Holm, and Cochran's Q for heterogeneity.
``srm``: chi-square and sequential (Dirichlet-multinomial Bayes factor) SRM checks.
``sequential``: asymptotic confidence sequences, valid under daily peeking.
``power``: power, MDE and sample size (Welch, optionally with CUPED's rho).
``synthetic``: Monte-Carlo checks of all of it on draws with a planted truth.
``arms``: an A/B test inside the market (``SplitPolicy`` routes each unit's decisions to its
arm's policy, logs exposures and every arm's true card probabilities; ``run_experiment``).
``logs``: any logs folder in the project's schema -> one row per analysis unit, its arm, its
pre-period covariates, and the true metric values when the market's truth is there.
``report``: ``ab_report`` (KPIs per arm, plain and CUPED deltas, SRM, daily looks with the
always-valid boundary, the truth beside each estimate) and ``write_report`` (md, json, png).
"""

from recsys.experiments.analysis import (
    Estimate,
    Metric,
    Sample,
    analyse,
    arm_values,
    compare,
    estimates,
    holm,
    to_frame,
    with_holm,
)
from recsys.experiments.arms import SplitPolicy, run_experiment
from recsys.experiments.assignment import (
    Design,
    Experiment,
    Layer,
    assign,
    attach_arms,
    bucket,
    check_weights,
)
from recsys.experiments.logs import METRICS, exposure_log, true_values, unit_table
from recsys.experiments.power import minimum_detectable_effect, power, sample_size
from recsys.experiments.report import Report, ab_report, write_report
from recsys.experiments.segments import heterogeneity, segment_effects
from recsys.experiments.sequential import (
    always_valid_p,
    boundary,
    halfwidth,
    mixing_rho,
    sequential,
    z_boundary,
)
from recsys.experiments.srm import (
    SrmCheck,
    chi2_p_values,
    log_bayes_factor,
    sequential_srm,
    srm_power,
    srm_test,
)

__all__ = [
    "METRICS",
    "Design",
    "Estimate",
    "Experiment",
    "Layer",
    "Metric",
    "Report",
    "Sample",
    "SplitPolicy",
    "ab_report",
    "SrmCheck",
    "always_valid_p",
    "analyse",
    "arm_values",
    "assign",
    "attach_arms",
    "boundary",
    "bucket",
    "check_weights",
    "chi2_p_values",
    "compare",
    "estimates",
    "exposure_log",
    "halfwidth",
    "heterogeneity",
    "holm",
    "log_bayes_factor",
    "minimum_detectable_effect",
    "mixing_rho",
    "power",
    "run_experiment",
    "sample_size",
    "segment_effects",
    "sequential",
    "sequential_srm",
    "srm_power",
    "srm_test",
    "to_frame",
    "true_values",
    "unit_table",
    "with_holm",
    "write_report",
    "z_boundary",
]
