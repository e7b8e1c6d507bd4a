"""The difference between arms of mean and ratio metrics, with intervals a growth team can trust.

Every metric goes through one path, the *linearisation* of the delta method (Deng, Knoblich & Lu
2018, "Applying the delta method in metric analytics"): per arm, a metric is a ratio of sums
``R = sum(y) / sum(x)`` over its units (``x = 1`` for a mean metric such as GMV per viewer; the
clicks for CVR = orders / clicks), and each unit's linearised value ``(y - R x) / mean(x)`` has
mean zero and variance ``n Var(R)`` to first order. So

- a **mean metric** is the plain mean, and its variance ``s^2 / n``: Welch's t-test and interval
  (Welch-Satterthwaite degrees of freedom; ``equal_var=True`` gives Student's pooled test), equal
  to ``scipy.stats.ttest_ind`` to rounding;
- a **ratio metric** gets the delta-method variance, with the same t machinery (its degrees of
  freedom count the units that carry the denominator; they matter for few clusters);
- **CUPED** (Deng, Xu, Kohavi & Walker 2013) regresses the linearised values on a pre-period
  covariate: ``theta = Cov(l, c) / Var(c)`` on the pooled units of both arms, each arm's
  estimate moves by ``-theta (mean_arm(c) - mean_pooled(c))`` and its variance shrinks by
  ``1 - rho^2``. It works alike for ratio metrics (regression on the linearised values);
- **cluster-robust** errors: when the randomisation unit (a live room) holds several analysis
  units (its viewers), ``cluster=`` sums ``y``, ``x`` (for a mean metric the unit count) and the
  covariate per cluster first, so the metric becomes a ratio of cluster sums whose delta-method
  variance is the cluster-robust sandwich of the regression on the arm, with the CR2 correction
  and Bell-McCaffrey degrees of freedom of ``smallsample`` (a ratio metric's single units are
  clusters of one): they count unequal cluster sizes and denominators held by few units;
- the **relative lift** ``R_t / R_c - 1`` has the delta-method variance
  ``V_t / R_c^2 + R_t^2 V_c / R_c^4``;
- several arms or metrics: **Holm**'s step-down adjustment (``statsmodels`` ``multipletests``)
  over the family of one ``analyse`` call (effects by segment: ``recsys.experiments.segments``).

An estimate that cannot be made (an arm with fewer than two units, a zero denominator or one
held by a single unit, no variation, a zero control value for the lift) is an explicit row
with ``estimable`` (or ``lift_estimable``) False and the ``reason``; its numbers are NaN only
beside that flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from recsys.experiments import smallsample as ss

NAN = float("nan")


@dataclass(frozen=True)
class Metric:
    """A metric over units: ``numerator`` summed, over ``denominator`` summed (a ratio metric)
    or over the unit count (a mean metric); ``covariate`` a pre-period column for CUPED."""

    name: str
    numerator: str
    denominator: str | None = None
    covariate: str | None = None


@dataclass(frozen=True)
class Sample:
    """One arm's units of a metric: numerators ``y``, denominators ``x`` (None: a mean
    metric), pre-period covariate ``c`` (None: no CUPED)."""

    y: np.ndarray
    x: np.ndarray | None = None
    c: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Estimate:
    """The difference of one metric between an arm and the control, absolute and relative."""

    metric: str
    arm: str
    control: str
    method: str
    n_arm: int
    n_control: int
    estimable: bool
    reason: str = ""
    value_arm: float = NAN
    value_control: float = NAN
    diff: float = NAN
    se: float = NAN
    df: float = NAN
    ci_lo: float = NAN
    ci_hi: float = NAN
    p_value: float = NAN
    lift_estimable: bool = False
    lift: float = NAN
    lift_lo: float = NAN
    lift_hi: float = NAN
    theta: float = 0.0
    p_adjusted: float = NAN
    significant: bool = False


def _linearise(s: Sample) -> tuple[float, np.ndarray]:
    """(ratio of sums, linearised values with mean zero) of one arm."""
    if s.x is None:
        value = float(s.y.mean())
        return value, s.y - value
    value = float(s.y.sum() / s.x.sum())
    return value, (s.y - value * s.x) / s.x.mean()


def _cuped(samples: Sequence[Sample], values: list[float], lins: list[np.ndarray]):
    """CUPED-adjusted values and linearised values, and theta (pooled over the arms)."""
    c_all, l_all = np.concatenate([s.c for s in samples]), np.concatenate(lins)
    var_c = c_all.var(ddof=1)
    theta = float(np.cov(l_all, c_all)[0, 1] / var_c) if var_c > 0 else 0.0
    centre = c_all.mean()
    values = [v - theta * (s.c.mean() - centre) for v, s in zip(values, samples, strict=True)]
    lins = [lin - theta * (s.c - s.c.mean()) for lin, s in zip(lins, samples, strict=True)]
    return values, lins, theta


def _check_samples(t: Sample, c: Sample) -> None:
    """Refuse non-finite values and arms that disagree on the metric's form."""
    for part in ("y", "x", "c"):
        arrays = [getattr(s, part) for s in (t, c)]
        if (arrays[0] is None) != (arrays[1] is None):
            raise ValueError(f"compare: {part!r} given for one arm only")
        if arrays[0] is not None and not all(np.isfinite(a).all() for a in arrays):
            raise ValueError(f"compare: {part!r} has NaN or infinite values")
        if any(a is not None and len(a) != s.n for a, s in zip(arrays, (t, c), strict=True)):
            raise ValueError(f"compare: {part!r} and 'y' differ in length")
    if t.x is not None and any((s.x < 0).any() for s in (t, c)):
        raise ValueError("compare: 'x' has negative values; denominators are counts or sums >= 0")


def _why_not(s: Sample, name: str) -> str:
    """Why one arm's value cannot be estimated, or ''."""
    if s.n < 2:
        return f"arm {name!r} has {s.n} unit(s); at least 2 are needed"
    if s.x is not None and s.x.sum() == 0:
        return f"arm {name!r}: zero denominator (its units sum to 0)"
    if ss.concentrated(ss.leverages(s.n, s.x)):
        return f"arm {name!r}: one unit holds the whole denominator; no variance is estimable"
    return ""


def _variances(
    lins: list[np.ndarray], levs: list[np.ndarray], equal_var: bool
) -> tuple[float, float, float]:
    """(variance of the arm's estimate, of the control's, degrees of freedom): CR2 per arm
    with Bell-McCaffrey degrees of freedom, combined as Welch (Welch's test itself for a
    mean metric of single units); Student's pooled variance with ``equal_var``."""
    (lt, lc), (nt, nc) = lins, (len(lins[0]), len(lins[1]))
    if equal_var:
        pooled = ((nt - 1) * lt.var(ddof=1) + (nc - 1) * lc.var(ddof=1)) / (nt + nc - 2)
        return pooled / nt, pooled / nc, float(nt + nc - 2)
    vt, vc = (ss.cr2_variance(lin, h) for lin, h in zip(lins, levs, strict=True))
    return vt, vc, ss.welch_df(vt, vc, *(ss.effective_df(h) for h in levs))


def _lift(est: Estimate, vt: float, vc: float, crit: float) -> Estimate:
    """The relative lift R_t / R_c - 1 and its delta-method interval."""
    rt, rc = est.value_arm, est.value_control
    if rc == 0:
        why = "; relative lift not estimable: control value is 0"
        return replace(est, reason=(est.reason + why).lstrip("; "))
    lift = rt / rc - 1
    half = crit * np.sqrt(vt / rc**2 + rt**2 * vc / rc**4)
    return replace(est, lift_estimable=True, lift=lift, lift_lo=lift - half, lift_hi=lift + half)


def compare(
    treatment: Sample,
    control: Sample,
    *,
    metric: str = "metric",
    arm: str = "treatment",
    control_name: str = "control",
    alpha: float = 0.05,
    equal_var: bool = False,
    clustered: bool = False,
) -> Estimate:
    """The difference ``treatment - control`` of one metric, its t-interval and p-value."""
    _check_samples(treatment, control)
    method = _method(treatment, equal_var, clustered)
    base = Estimate(metric, arm, control_name, method, treatment.n, control.n, False)
    if why := _why_not(treatment, arm) or _why_not(control, control_name):
        return replace(base, reason=why)
    values, lins = map(list, zip(*(_linearise(s) for s in (treatment, control)), strict=True))
    theta = 0.0
    if treatment.c is not None:
        values, lins, theta = _cuped((treatment, control), values, lins)
    base = replace(base, value_arm=values[0], value_control=values[1], theta=theta)
    return _t_test(base, lins, [ss.leverages(s.n, s.x) for s in (treatment, control)],
                   equal_var, alpha)  # fmt: skip


def _t_test(
    base: Estimate, lins: list[np.ndarray], levs: list[np.ndarray], equal_var: bool, alpha: float
) -> Estimate:
    """``base`` (values set) with its t-interval, p-value and lift from lins and leverages."""
    vt, vc, df = _variances(lins, levs, equal_var)
    se = float(np.sqrt(vt + vc))
    if not se > 0:
        return replace(base, reason="no variation: both arms' units are constant")
    diff, crit = base.value_arm - base.value_control, float(stats.t.ppf(1 - alpha / 2, df))
    p = float(2 * stats.t.sf(abs(diff / se), df))
    half = crit * se
    est = replace(base, estimable=True, diff=diff, se=se, df=df, p_value=p)
    return _lift(replace(est, ci_lo=diff - half, ci_hi=diff + half), vt, vc, crit)


def _method(t: Sample, equal_var: bool, clustered: bool) -> str:
    """A short label of the estimator: student/welch/delta, +cuped, +cluster."""
    name = "delta" if t.x is not None else "student" if equal_var else "welch"
    if t.c is not None:
        name += "+cuped"
    return name + ("+cluster" if clustered else "")


def holm(p_values: Sequence[float], alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm-adjusted p-values and rejections; NaN p-values (not estimable) are left out of the
    family and stay NaN / not rejected."""
    p = np.asarray(p_values, dtype=float)
    adjusted, reject = np.full(len(p), np.nan), np.zeros(len(p), dtype=bool)
    ok = ~np.isnan(p)
    if ok.any():
        reject[ok], adjusted[ok] = multipletests(p[ok], alpha=alpha, method="holm")[:2]
    return adjusted, reject


def validate(
    frame: pd.DataFrame, metrics: Sequence[Metric], arm_col: str, cluster: str | None = None
) -> None:
    """Refuse missing columns, missing values and clusters spread over several arms, with a
    message naming them."""
    if arm_col not in frame.columns:
        raise KeyError(f"no arm column {arm_col!r} in the data")
    for metric in metrics:
        cols = [metric.numerator, metric.denominator, metric.covariate, cluster]
        for col in (c for c in cols if c is not None):
            if col not in frame.columns:
                raise KeyError(f"metric {metric.name!r}: no column {col!r} in the data")
            if missing := int(frame[col].isna().sum()):
                raise ValueError(
                    f"metric {metric.name!r}: column {col!r} has {missing} missing values; "
                    "fill them (0 for no activity) or drop those units"
                )
    if cluster is not None:
        _check_clusters(frame, arm_col, cluster)


def _sample(rows: pd.DataFrame, metric: Metric, cluster: str | None) -> Sample:
    """One arm's Sample, its units summed per cluster when ``cluster`` is given."""
    if cluster is not None:
        sums = {
            "y": (metric.numerator, "sum"),
            "x": (metric.denominator or metric.numerator, "sum" if metric.denominator else "size"),
        }
        if metric.covariate:
            sums["c"] = (metric.covariate, "sum")
        g = rows.groupby(cluster).agg(**sums)
        c = g["c"].to_numpy(float) if metric.covariate else None
        return Sample(g["y"].to_numpy(float), g["x"].to_numpy(float), c)

    def column(name: str | None) -> np.ndarray | None:
        return rows[name].to_numpy(float) if name else None

    return Sample(
        rows[metric.numerator].to_numpy(float), column(metric.denominator), column(metric.covariate)
    )


def arm_order(
    frame: pd.DataFrame, arm_col: str, control: str, arms: Sequence[str] | None
) -> list[str]:
    """The arms to report (configured, else seen), control first; unknown arms refused."""
    seen = [str(a) for a in pd.unique(frame[arm_col])]
    arms = list(arms) if arms is not None else sorted(seen)
    if unknown := sorted(set(seen) - set(arms)):
        raise ValueError(f"arms {unknown} in the data are not among the experiment's {arms}")
    if control not in arms:
        raise ValueError(f"control arm {control!r} is not among the arms {arms}")
    return [control] + [a for a in arms if a != control]


def _check_clusters(frame: pd.DataFrame, arm_col: str, cluster: str) -> None:
    """Each cluster must sit in one arm: it is the randomisation unit."""
    arms_per = frame.groupby(cluster)[arm_col].nunique()
    if (arms_per > 1).any():
        bad = arms_per.index[arms_per > 1][:5].tolist()
        raise ValueError(
            f"clusters {bad} appear in several arms: {cluster!r} is not the randomisation unit"
        )


def estimates(
    frame: pd.DataFrame,
    metrics: Sequence[Metric],
    arms: list[str],
    *,
    arm_col: str = "arm",
    cluster: str | None = None,
    alpha: float = 0.05,
    equal_var: bool = False,
) -> list[Estimate]:
    """One Estimate per metric and treatment arm against ``arms[0]``, the control (no
    multiplicity adjustment: see ``with_holm``)."""
    groups = {str(k): rows for k, rows in frame.groupby(arm_col, sort=False)}
    empty, out = frame.iloc[:0], []
    for metric in metrics:
        samples = {a: _sample(groups.get(a, empty), metric, cluster) for a in arms}
        for arm in arms[1:]:
            kw = {"metric": metric.name, "arm": arm, "control_name": arms[0], "alpha": alpha}
            out.append(
                compare(
                    samples[arm],
                    samples[arms[0]],
                    equal_var=equal_var,
                    clustered=cluster is not None,
                    **kw,
                )
            )
    return out


def with_holm(rows: Sequence[Estimate], alpha: float = 0.05) -> pd.DataFrame:
    """The estimates as a frame, Holm-adjusted over all of them as one family."""
    adjusted, reject = holm([e.p_value for e in rows], alpha)
    return to_frame(
        [
            replace(e, p_adjusted=float(p), significant=bool(r))
            for e, p, r in zip(rows, adjusted, reject, strict=True)
        ]
    )


def analyse(
    frame: pd.DataFrame,
    metrics: Sequence[Metric],
    *,
    control: str = "control",
    arms: Sequence[str] | None = None,
    arm_col: str = "arm",
    cluster: str | None = None,
    alpha: float = 0.05,
    equal_var: bool = False,
) -> pd.DataFrame:
    """Every metric x treatment arm against ``control``: one row each, Holm-adjusted over them.

    ``frame`` has one row per analysis unit with its arm and metric columns. ``arms`` lists the
    experiment's arms (``Experiment.arm_names``) so that an arm without units still gets its
    explicit not-estimable row. ``cluster`` names the randomisation unit when it is coarser
    than a row (a room whose viewers are the rows)."""
    validate(frame, metrics, arm_col, cluster)
    arms = arm_order(frame, arm_col, control, arms)
    kw = {"arm_col": arm_col, "cluster": cluster, "alpha": alpha, "equal_var": equal_var}
    return with_holm(estimates(frame, metrics, arms, **kw), alpha)


def arm_values(
    frame: pd.DataFrame,
    metrics: Sequence[Metric],
    arms: Sequence[str],
    *,
    arm_col: str = "arm",
    cluster: str | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Each metric's value per arm with its t-interval (``metric``, ``arm``, ``units``,
    ``value``, ``ci_lo``, ``ci_hi``, ``estimable``, ``reason``); ``units`` counts clusters
    when ``cluster`` is given; CR2 with Bell-McCaffrey degrees of freedom for ratios. An arm
    with fewer than two units, a zero denominator or its denominator in one unit is an
    explicit not-estimable row."""
    groups = {str(k): rows for k, rows in frame.groupby(arm_col, sort=False)}
    out = []
    for metric in metrics:
        plain = Metric(metric.name, metric.numerator, metric.denominator)
        for arm in arms:
            s = _sample(groups.get(arm, frame.iloc[:0]), plain, cluster)
            row = {"metric": metric.name, "arm": arm, "units": s.n, "value": NAN,
                   "ci_lo": NAN, "ci_hi": NAN, "estimable": False, "reason": ""}  # fmt: skip
            if why := _why_not(s, arm):
                out.append(row | {"reason": why})
                continue
            value, lin = _linearise(s)
            h = ss.leverages(s.n, s.x)
            crit = float(stats.t.ppf(1 - alpha / 2, ss.effective_df(h)))
            half = crit * float(np.sqrt(ss.cr2_variance(lin, h)))
            out.append(row | {"value": value, "ci_lo": value - half, "ci_hi": value + half,
                              "estimable": True})  # fmt: skip
    return pd.DataFrame(out)


def to_frame(estimates: Sequence[Estimate]) -> pd.DataFrame:
    """Estimates as a DataFrame, one row each, columns in the dataclass's order."""
    columns = list(Estimate.__dataclass_fields__)
    return pd.DataFrame([asdict(e) for e in estimates], columns=columns)
