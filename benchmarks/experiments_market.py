"""The A/B statistics checked inside the market simulator, where the true effect is known.

- **Coverage**: one A/B, replicated: each replication draws the market anew on the same world
  (``MarketConfig.draw_seed``: other app openings and responses) and hashes the units with a new
  salt, runs ``SplitPolicy`` for a few days, and asks whether each 95% interval (plain and
  CUPED; Welch for the mean, delta method for the ratios; clustered by room when rooms are
  randomised; CR2 errors with Bell-McCaffrey degrees of freedom for every ratio of sums) covers
  the true effect (``recsys.experiments.arms``: the difference of the arms' true metric values
  over the exposed units, from every arm's slates and the planted response).
  Viewer-randomised: popularity (warmed on the world's first day) vs random cards on the tiny
  world. Room-randomised: random slates whose rooms in the treatment show their products in
  order of popularity, on the small world (150 rooms; the tiny world has 24).
- **Pipeline**: ``recsys-experiment`` comparing the trained pipeline's session-aware ranker with
  the two-tower's own ordering on the small world (a ``recsys-pipeline`` run's artefacts).

Used by ``benchmarks/experiments.py --market`` / ``--pipeline-run``.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from recsys.data.schema import TABLES
from recsys.data.tables import read_table
from recsys.datasets import ensure_world
from recsys.experiments import METRICS, Experiment, Metric, estimates, run_experiment, unit_table
from recsys.experiments.logs import cluster_of, true_values
from recsys.market import Market, MarketConfig, OraclePolicy, PopularityPolicy, RandomPolicy

Z_MC = 1.959963984540054


@dataclass(frozen=True)
class Design:
    name: str
    unit: str
    preset: str
    start_day: int
    days: int
    open_rate: float
    control: str  # popularity | random | oracle
    treatment: str


DESIGNS = {
    "viewer": Design("viewer", "viewer", "tiny", 1, 2, 1.0, "popularity", "oracle"),
    "room": Design("room", "room", "small", 7, 1, 0.3, "random", "oracle"),
}
_PRE: dict[str, list[pd.DataFrame]] = {}


def _pre_events(preset: str, start_day: int, pre_days: int = 7) -> list[pd.DataFrame]:
    """The world's own events before the start (each worker reads them once)."""
    if preset not in _PRE:
        world = ensure_world(preset, 0)
        days = range(max(0, start_day - pre_days), start_day)
        _PRE[preset] = [read_table(world / "events" / f"part-{d:05d}.parquet", TABLES["events"])
                        for d in days]  # fmt: skip
    return _PRE[preset]


def _policy(kind: str, history: list[pd.DataFrame], seed: int, market: Market):
    if kind == "oracle":
        return OraclePolicy(market.truth, market.config.response)
    return PopularityPolicy().warm(history) if kind == "popularity" else RandomPolicy(seed=seed)


def replicate(design: Design, rep: int, root: str) -> list[dict]:
    """One replication: market run, then each metric's plain and CUPED intervals and truth."""
    history = _pre_events(design.preset, design.start_day)
    config = MarketConfig(preset=design.preset, seed=0, start_day=design.start_day,
                          draw_seed=10_000 + rep, open_rate=design.open_rate)  # fmt: skip
    out = Path(root) / f"{design.name}-{rep}"
    exp = Experiment(f"coverage-{design.name}", {"control": 0.5, "treatment": 0.5},
                     salt=f"replication-{rep}", unit=design.unit)  # fmt: skip
    market = Market(config, out)
    arms = {"control": _policy(design.control, history, rep, market),
            "treatment": _policy(design.treatment, history, rep, market)}  # fmt: skip
    try:
        run_experiment(market, exp, arms, days=design.days)
        units = unit_table(out, exp, pre_events=pd.concat(history, ignore_index=True))
        truth = true_values(out, exp, units).set_index(["metric", "arm"])["true_value"]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    rows = []
    for adjustment in ("none", "cuped"):
        metrics = [m if adjustment == "cuped" else Metric(m.name, m.numerator, m.denominator)
                   for m in METRICS]  # fmt: skip
        for e in estimates(units, metrics, list(exp.arm_names), cluster=cluster_of(exp)):
            true = float(truth[(e.metric, "treatment")] - truth[(e.metric, "control")])
            rows.append({"design": design.name, "rep": rep, "metric": e.metric,
                         "adjustment": adjustment, "estimable": e.estimable, "diff": e.diff,
                         "se": e.se, "df": e.df, "lo": e.ci_lo, "hi": e.ci_hi, "true": true,
                         "n_arm": e.n_arm, "n_control": e.n_control})  # fmt: skip
    return rows


def _job(args: tuple) -> list[dict]:
    name, rep, root = args
    return replicate(DESIGNS[name], rep, root)


def coverage_study(designs: list[str], reps: int, workers: int) -> pd.DataFrame:
    """Every replication's rows of every design (``workers`` processes)."""
    root = tempfile.mkdtemp(prefix="ab-coverage-")
    jobs = [(name, rep, root) for name in designs for rep in range(reps)]
    try:
        if workers > 1:
            with mp.get_context("fork").Pool(workers) as pool:
                parts = list(tqdm(pool.imap_unordered(_job, jobs), total=len(jobs), desc="reps"))
        else:
            parts = [_job(j) for j in tqdm(jobs, desc="reps")]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return pd.DataFrame([row for part in parts for row in part])


def summarise(rows: pd.DataFrame) -> list[dict]:
    """Per design, metric and adjustment: coverage (with its Monte-Carlo se), mean truth,
    bias, the mean reported se against the spread of the estimates, and units per arm."""
    out = []
    for (design, metric, adj), g in rows.groupby(["design", "metric", "adjustment"], sort=False):
        ok = g.loc[g["estimable"]]
        covered = ((ok["lo"] <= ok["true"]) & (ok["true"] <= ok["hi"])).to_numpy()
        rate = float(covered.mean()) if len(ok) else float("nan")
        err = (ok["diff"] - ok["true"]).to_numpy()
        sd = float(err.std(ddof=1))
        out.append(
            {
                "design": design,
                "metric": metric,
                "adjustment": adj,
                "reps": len(g),
                "estimable": len(ok),
                "coverage": rate,
                "mc_se": float(np.sqrt(rate * (1 - rate) / max(len(ok), 1))),
                "true_effect_mean": float(ok["true"].mean()),
                "bias": float(err.mean()),
                "bias_se": sd / np.sqrt(len(err)),
                "sd_of_error": sd,
                "mean_se": float(ok["se"].mean()),
                "mean_df": float(ok["df"].mean()),
                "units_per_arm": float((ok["n_arm"] + ok["n_control"]).mean() / 2),
            }
        )
    return out


def _df(row: dict) -> str:
    """The mean degrees of freedom of the t-intervals (absent from records made before)."""
    return f"{row['mean_df']:.0f}" if "mean_df" in row else "-"


def coverage_lines(result: dict) -> list[str]:
    runs = result.get("runs") or {d: result for d in result["designs"]}
    commands = {}
    for design in result["designs"]:
        run = runs[design]
        commands.setdefault(
            f"`{run['command']}` ({run['seconds']:.0f} s, {run['workers']} processes)", []
        ).append(design)
    lines = ["", "## Coverage in the market: one A/B replicated, intervals against the true effect",
             "", *(f"- {', '.join(ds)}: {c}" for c, ds in commands.items()), "",
             "| design | metric | adjustment | replications | coverage of the true effect | "
             "mean true effect | bias (± MC se) | sd of error / mean se | mean t df | "
             "units per arm |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in result["summary"]:
        lines.append(
            f"| {r['design']} | {r['metric']} | {r['adjustment']} | {r['estimable']}/{r['reps']}"
            f" | {r['coverage']:.3f} ± {r['mc_se']:.3f} | {r['true_effect_mean']:.4g} | "
            f"{r['bias']:+.3g} ± {r['bias_se']:.2g} | {r['sd_of_error'] / r['mean_se']:.3f} | "
            f"{_df(r)} | {r['units_per_arm']:.0f} |"
        )
    notes = [f"- **{n}**: {d.unit}-randomised, {d.preset} world (seed 0), market days "
             f"{d.start_day}-{d.start_day + d.days - 1}, open rate {d.open_rate}; control "
             f"{d.control}, treatment {d.treatment}"
             + (" (the control lays out every slate; a treated room's slots show its products "
                "in the treatment's order; analysed per (room, viewer) row, clustered by room)"
                if d.unit == "room" else "") for n, d in DESIGNS.items()
             if n in result["designs"]]  # fmt: skip
    method = ("- Intervals: Welch for a mean of viewers; for ratios of sums (CTR, CVR, AOV, and "
              "every metric clustered by room) CR2 errors with Bell-McCaffrey degrees of freedom "
              "(`recsys.experiments.smallsample`), combined across arms as Welch")  # fmt: skip
    recorded = all("mean_df" in r for r in result["summary"])
    return lines + [""] + notes + ([method] if recorded else [])


def pipeline_lines(result: dict) -> list[str]:
    rec = result["report"]
    gmv = [e for e in rec["effects"] if e["metric"] == "gmv_per_viewer"]
    lines = ["", "## recsys-experiment: session-aware ranker vs the two-tower's own ordering",
             "", f"`{result['command']}` ({result['seconds']:.0f} s); days {rec['days']}, "
             f"{rec['unit']}-randomised, treatment = ranker, control = two-tower ordering; "
             "`pipeline_run` is a `recsys-pipeline` run on the small world (seed 0): its "
             "two-tower checkpoint with its index and its learned ranker", "",
             "| metric | adjustment | delta [95% CI] | true effect | covered |",
             "|---|---|---|---:|---|"]  # fmt: skip
    for e in gmv + [e for e in rec["effects"] if e["metric"] != "gmv_per_viewer"]:
        cell = (f"{e['diff']:.4g} [{e['ci_lo']:.4g}, {e['ci_hi']:.4g}]" if e["estimable"]
                else f"not estimable: {e['reason']}")  # fmt: skip
        covered = {True: "yes", False: "no", None: "unknown"}[e["covered"]]
        lines.append(f"| {e['metric']} | {e['adjustment']} | {cell} | "
                     f"{e['true_effect']:.4g} | {covered} |")  # fmt: skip
    kpi = [k for k in rec["kpis"] if k["metric"] == "gmv_per_viewer"]
    lines += ["", "True GMV per viewer-day by arm: " + ", ".join(
        f"{k['arm']} {k['true_value']:.3f} (estimate {k['value']:.3f} [{k['ci_lo']:.3f}, "
        f"{k['ci_hi']:.3f}], {k['units']} viewers)" for k in kpi) + f". SRM p = "
        f"{rec['srm']['p_value']:.3f}. The full report: `{result['report_path']}`."]  # fmt: skip
    return lines
