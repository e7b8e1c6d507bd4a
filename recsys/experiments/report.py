"""The A/B report of an experiment's logs: KPIs per arm, deltas, SRM, daily looks, the truth.

    report = ab_report("runs/ab", exp, pre_events=world_events_before_start)
    write_report(report, "runs/ab/report")       # report.md, report.json, sequential.png

``ab_report`` reads any logs folder in the project's schema (``recsys.experiments.logs``):

* **KPIs per arm**: CTR, CVR (orders / clicks, a ratio metric), GMV per viewer-day and AOV with
  95% t-intervals (delta method for ratios; for a room experiment, clustered by room; CR2 errors
  with Bell-McCaffrey degrees of freedom for ratios of sums, ``smallsample``);
* **deltas** of each treatment arm against the control, plain and CUPED-adjusted on the units'
  pre-period behaviour, Welch / delta-method intervals with their t degrees of freedom (a
  small number says the interval rests on few clusters, or on few units holding the
  denominator: AOV's orders), Holm over each family;
* **SRM**: chi-square of the exposed units per arm against the weights at the end, and the
  sequential (anytime-valid) check over the days;
* **daily looks** of the primary metric (CUPED when a pre-period is given): the fixed-horizon
  interval beside the always-valid confidence sequence (``sequential``), whose boundary is the
  one a team may check every day;
* the **true** value of every metric under every arm and the true effect beside each estimate,
  when the logs carry the market's counterfactual truth (``truth/arms/``; otherwise those
  columns say "unknown").

Nothing estimable is left as a bare NaN: such rows carry ``estimable`` False and the reason,
and the markdown prints "not estimable: <reason>".
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from recsys.experiments.analysis import Metric, arm_order, arm_values, estimates, with_holm
from recsys.experiments.assignment import Experiment
from recsys.experiments.logs import METRICS, cluster_of, exposure_log, true_values, unit_table
from recsys.experiments.sequential import TUNING, sequential, z_boundary
from recsys.experiments.srm import SRM_THRESHOLD, sequential_srm, srm_test

PRIMARY = "gmv_per_viewer"


@dataclass(frozen=True)
class Report:
    experiment: str
    unit: str
    days: list[int]
    kpis: pd.DataFrame  # arm_values columns + true_value
    effects: pd.DataFrame  # Estimate columns + adjustment, true_effect, covered
    srm: dict
    looks: pd.DataFrame  # one row per day of the primary metric's delta
    has_truth: bool


def _effects(units, metrics, arms, cluster, alpha, truth) -> pd.DataFrame:
    """Plain and CUPED deltas (Holm within each), with the true effect where known."""
    frames = []
    for adjustment, ms in (("none", [Metric(m.name, m.numerator, m.denominator) for m in metrics]),
                           ("cuped", [m for m in metrics if m.covariate])):  # fmt: skip
        rows = estimates(units, ms, arms, cluster=cluster, alpha=alpha)
        frames.append(with_holm(rows, alpha).assign(adjustment=adjustment))
    out = pd.concat(frames, ignore_index=True)
    out["true_effect"], out["covered"] = np.nan, pd.Series([None] * len(out), dtype=object)
    if truth is not None:
        value = truth.set_index(["metric", "arm"])["true_value"]
        pairs = zip(out["metric"], out["arm"], out["control"], strict=True)
        out["true_effect"] = [value[(m, a)] - value[(m, c)] for m, a, c in pairs]
        ok = out["estimable"] & out["true_effect"].notna()
        out.loc[ok, "covered"] = ((out["ci_lo"] <= out["true_effect"])
                                  & (out["true_effect"] <= out["ci_hi"]))[ok]  # fmt: skip
    return out


def _srm(folder, experiment: Experiment, days: list[int], threshold: float) -> dict:
    """The end-of-test chi-square and the sequential check over days, on exposed units."""
    log = exposure_log(folder, experiment, days)
    first = log.groupby("unit").agg(arm=("arm", "first"), day=("day", "min"))
    daily = pd.crosstab(first["day"], first["arm"]).reindex(index=days, columns=list(
        experiment.arm_names), fill_value=0)  # fmt: skip
    cumulative = daily.cumsum().to_numpy()
    end = srm_test(cumulative[-1], experiment.weights, threshold)
    seq = sequential_srm(cumulative, experiment.weights, threshold)
    return {"arms": list(experiment.arm_names), "weights": experiment.weights.tolist(),
            "counts": list(end.counts), "expected": list(end.expected), "chi2": end.statistic,
            "p_value": end.p_value, "flagged": end.flagged, "estimable": end.estimable,
            "reason": end.reason, "threshold": threshold,
            "sequential": [{"day": d, "counts": c.tolist(), "p_value": float(p), "flagged": bool(f)}
                           for d, c, p, f in zip(days, cumulative, seq["p_value"],
                                                 seq["flagged"], strict=True)]}  # fmt: skip


def _looks(folder, experiment, days, metric, pre_events, alpha, tuning) -> pd.DataFrame:
    """The primary metric's first treatment delta after each day, fixed and always-valid."""
    rows, arms = [], list(experiment.arm_names)
    for d in range(1, len(days) + 1):
        seen = days[:d]
        units = unit_table(folder, experiment, pre_events=pre_events, days=seen)
        est = estimates(units, [metric], arms, cluster=cluster_of(experiment), alpha=alpha)[0]
        row = {"day": seen[-1], "units": est.n_arm + est.n_control, "estimable": est.estimable,
               "reason": est.reason, "diff": est.diff, "ci_lo": est.ci_lo, "ci_hi": est.ci_hi}
        if est.estimable:
            seq = sequential(est, alpha, tuning)
            row |= {"cs_lo": seq.ci_lo, "cs_hi": seq.ci_hi, "z": est.diff / est.se,
                    "z_sequential": float(z_boundary(row["units"], alpha, tuning)),
                    "p_sequential": seq.p_value}  # fmt: skip
        truth = true_values(folder, experiment, units, [metric], seen)
        if truth is not None:
            v = truth.set_index("arm")["true_value"]
            row["true_effect"] = float(v[arms[1]] - v[arms[0]])
        rows.append(row)
    out = pd.DataFrame(rows)
    if "p_sequential" in out:
        out["p_sequential"] = out["p_sequential"].cummin()  # the running minimum is valid
    return out


def ab_report(
    folder: str | Path,
    experiment: Experiment,
    *,
    pre_events: pd.DataFrame | None = None,
    metrics: Sequence[Metric] = METRICS,
    primary: str = PRIMARY,
    alpha: float = 0.05,
    tuning: float = TUNING,
    srm_threshold: float = SRM_THRESHOLD,
) -> Report:
    """The report of ``experiment`` over every logged day of ``folder``."""
    units = unit_table(folder, experiment, pre_events=pre_events)
    days = sorted(set(exposure_log(folder, experiment, _days(folder))["day"].tolist()))
    arms = arm_order(units, "arm", experiment.arm_names[0], experiment.arm_names)
    cluster = cluster_of(experiment)
    truth = true_values(folder, experiment, units, metrics, days)
    kpis = arm_values(units, metrics, arms, cluster=cluster, alpha=alpha)
    kpis["true_value"] = np.nan if truth is None else kpis.merge(
        truth, on=["metric", "arm"], how="left")["true_value"].to_numpy()  # fmt: skip
    by_name = {m.name: m for m in metrics}
    if primary not in by_name:
        raise KeyError(f"primary metric {primary!r} is not one of {list(by_name)}")
    main = by_name[primary]
    if pre_events is None:
        main = replace(main, covariate=None)
    return Report(
        experiment=experiment.name, unit=experiment.unit, days=days, kpis=kpis,
        effects=_effects(units, metrics, arms, cluster, alpha, truth),
        srm=_srm(folder, experiment, days, srm_threshold),
        looks=_looks(folder, experiment, days, main, pre_events, alpha, tuning),
        has_truth=truth is not None,
    )  # fmt: skip


def _days(folder) -> list[int]:
    """Every day with impressions."""
    parts = sorted((Path(folder) / "impressions").glob("part-*.parquet"))
    if not parts:
        raise FileNotFoundError(f"{Path(folder) / 'impressions'}: no day parts")
    return [int(p.stem.split("-")[1]) for p in parts]


# -- writing -----------------------------------------------------------------------------------


def _num(v, digits: int = 4) -> str:
    return "unknown" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}g}"


def _interval(value, lo, hi) -> str:
    return f"{_num(value)} [{_num(lo)}, {_num(hi)}]"


def markdown(report: Report) -> str:
    """The report as markdown: KPI table, deltas, SRM, daily looks."""
    lines = [f"# A/B report: {report.experiment} ({report.unit}-randomised, days "
             f"{report.days[0]}-{report.days[-1]})", "",
             "| metric | arm | units | value [95% CI] | true value |", "|---|---|---|---|---|"]
    for r in report.kpis.itertuples():
        cell = _interval(r.value, r.ci_lo, r.ci_hi) if r.estimable else f"not estimable: {r.reason}"
        lines.append(f"| {r.metric} | {r.arm} | {r.units} | {cell} | {_num(r.true_value)} |")
    lines += ["", "| metric | adjustment | arm - control | delta [95% CI] | t df | lift [95% CI] "
              "| p (Holm) | true effect | covered |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report.effects.itertuples():
        if not r.estimable:
            lines.append(f"| {r.metric} | {r.adjustment} | {r.arm} - {r.control} | "
                         f"not estimable: {r.reason} | | | | {_num(r.true_effect)} | |")
            continue
        lift = _interval(r.lift, r.lift_lo, r.lift_hi) if r.lift_estimable else "not estimable"
        covered = "unknown" if r.covered is None else ("yes" if r.covered else "no")
        lines.append(f"| {r.metric} | {r.adjustment} | {r.arm} - {r.control} | "
                     f"{_interval(r.diff, r.ci_lo, r.ci_hi)} | {r.df:.0f} | {lift} | "
                     f"{_num(r.p_adjusted)} | "
                     f"{_num(r.true_effect)} | {covered} |")  # fmt: skip
    s = report.srm
    verdict = ("not estimable: " + s["reason"]) if not s["estimable"] else (
        "MISMATCH" if s["flagged"] else "ok")  # fmt: skip
    seq = s["sequential"][-1]
    lines += ["", f"SRM: units {dict(zip(s['arms'], s['counts'], strict=True))}, weights "
              f"{s['weights']}: chi-square p = {_num(s['p_value'])} -> {verdict}; sequential "
              f"p = {_num(seq['p_value'])} -> {'MISMATCH' if seq['flagged'] else 'ok'}", "",
              "| day | units | delta | fixed 95% CI | always-valid 95% CS | true effect |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for r in report.looks.to_dict("records"):
        cs = f"[{_num(r.get('cs_lo'))}, {_num(r.get('cs_hi'))}]" if r["estimable"] else \
            f"not estimable: {r['reason']}"  # fmt: skip
        lines.append(f"| {r['day']} | {r['units']} | {_num(r['diff'])} | [{_num(r['ci_lo'])}, "
                     f"{_num(r['ci_hi'])}] | {cs} | {_num(r.get('true_effect'))} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _plain(value):
    """JSON-safe: NaN -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def plot_looks(report: Report, path: Path) -> Path:
    """The primary delta over days: fixed interval, confidence sequence, truth; and |z| against
    the sequential boundary and the naive 1.96."""
    fig = Figure(figsize=(11, 3.8))  # no pyplot: no GUI backend, no global state
    ax, az = fig.subplots(1, 2)
    looks = report.looks.loc[report.looks["estimable"]]
    x = looks["day"].to_numpy()
    if len(looks) and "cs_lo" in looks:
        ax.fill_between(x, looks["cs_lo"], looks["cs_hi"], alpha=0.2, label="always-valid 95% CS")
        ax.errorbar(x, looks["diff"], yerr=[looks["diff"] - looks["ci_lo"],
                    looks["ci_hi"] - looks["diff"]], fmt="o", capsize=3,
                    label="estimate, fixed 95% CI")  # fmt: skip
        if "true_effect" in looks:
            ax.plot(x, looks["true_effect"], "k--", label="true effect")
        az.plot(x, looks["z"].abs(), "o-", label="|z| of the estimate")
        az.plot(x, looks["z_sequential"], "r-", label="sequential boundary")
        az.axhline(1.96, color="grey", linestyle=":", label="naive 1.96")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_title(f"{PRIMARY} delta by day")
    az.set_title("test statistic against the boundary")
    for a in (ax, az):
        a.set_xlabel("market day")
        a.set_xticks(x)
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """``report.md``, ``report.json`` and ``sequential.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "report.md", "json": out / "report.json",
             "plot": out / "sequential.png"}  # fmt: skip
    paths["markdown"].write_text(markdown(report))
    record = {"experiment": report.experiment, "unit": report.unit, "days": report.days,
              "has_truth": report.has_truth, "kpis": report.kpis.to_dict("records"),
              "effects": report.effects.to_dict("records"), "srm": report.srm,
              "looks": report.looks.to_dict("records")}  # fmt: skip
    paths["json"].write_text(json.dumps(_plain(record), indent=2, allow_nan=False) + "\n")
    plot_looks(report, paths["plot"])
    return paths
