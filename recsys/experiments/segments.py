"""Heterogeneous effects: the effect of an experiment per segment, with multiplicity control.

A growth team will ask "for whom did it work?": per profile tag (美妆爱好者, 价格敏感 ...), age
band, city tier or learned segment. Reading ten segments at 5% each finds a "winner" by chance
about 40% of the time, so ``segment_effects`` adjusts every segment x arm comparison of one call
as one family with Holm's step-down method (strong control of the family-wise error rate), and
``heterogeneity`` asks the prior question, whether the effect differs between segments at all:
Cochran's Q, ``sum w_i (d_i - d_bar)^2`` with inverse-variance weights ``w_i = 1 / se_i^2``,
chi-square with ``k - 1`` degrees of freedom under a common effect (Cochran 1954). Q assumes
independent segment estimates: segments of the randomisation unit (viewers split by a viewer
tag under viewer randomisation), not viewers of the same rooms under room randomisation.

Segments without units in an arm, or with a zero denominator, are explicit not-estimable rows
(``analysis``), left out of the Holm family and of Q.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from recsys.experiments.analysis import Metric, arm_order, estimates, validate, with_holm


def segment_effects(
    frame: pd.DataFrame,
    metric: Metric,
    segment: str,
    *,
    control: str = "control",
    arms: Sequence[str] | None = None,
    arm_col: str = "arm",
    cluster: str | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """The metric's effect per segment value and treatment arm (``analysis.Estimate`` columns
    after a ``segment`` column), Holm-adjusted over all of them."""
    validate(frame, [metric], arm_col, cluster)
    if segment not in frame.columns:
        raise KeyError(f"no segment column {segment!r} in the data")
    if missing := int(frame[segment].isna().sum()):
        raise ValueError(f"segment {segment!r}: {missing} units have no value; label them")
    arms = arm_order(frame, arm_col, control, arms)
    rows, labels = [], []
    for value, part in frame.groupby(segment, sort=True):
        found = estimates(part, [metric], arms, arm_col=arm_col, cluster=cluster, alpha=alpha)
        rows += found
        labels += [value] * len(found)
    out = with_holm(rows, alpha)
    out.insert(0, "segment", labels)
    return out


def _cochran_q(diff: np.ndarray, se: np.ndarray) -> tuple[float, float]:
    """(Q, p-value) of Cochran's test that all estimates share one value."""
    w = 1.0 / se**2
    q = float(np.sum(w * (diff - np.sum(w * diff) / np.sum(w)) ** 2))
    return q, float(stats.chi2.sf(q, len(diff) - 1))


def heterogeneity(effects: pd.DataFrame) -> pd.DataFrame:
    """Cochran's Q per arm over the estimable rows of ``segment_effects``: ``arm``,
    ``segments``, ``q``, ``df``, ``p_value``, ``estimable`` and ``reason`` (fewer than two
    estimable segments cannot be compared)."""
    rows = []
    for arm, part in effects.groupby("arm", sort=False):
        ok = part[part["estimable"]]
        k = len(ok)
        row = {"arm": arm, "segments": k, "df": k - 1, "estimable": k >= 2}
        if k < 2:
            rows.append(row | {"q": np.nan, "p_value": np.nan, "reason": "< 2 estimable segments"})
            continue
        q, p = _cochran_q(ok["diff"].to_numpy(float), ok["se"].to_numpy(float))
        rows.append(row | {"q": q, "p_value": p, "reason": ""})
    columns = ["arm", "segments", "q", "df", "p_value", "estimable", "reason"]
    return pd.DataFrame(rows, columns=columns)
