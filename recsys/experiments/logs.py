"""From logs in the project's schema to one row per analysis unit, with its arm and truth.

Any folder of day parts works, simulated or not: ``impressions/`` (one row per card shown:
``request_id``, ``user_id``, ``ts``, ``position``, ``session_id``, ``streamer_id``,
``product_id``, ``click``, ``purchase``, ``amount``, ``coupon_value``) and ``exposures/``
(``unit``, ``experiment``, ``arm``, ``ts``: what the serving layer or ``SplitPolicy`` logged).
The market's ``truth/arms/`` (every arm's true card probabilities) adds the true values when
present; the pre-period events (the ``events`` table of the days before the experiment) add
the CUPED covariates.

Rows (``unit_table``): for a **viewer** experiment one per exposed viewer; for a **room**
experiment one per (room, viewer reached by the room's cards), analysed with the room as the
cluster. Columns: ``impressions``, ``clicks``, ``orders``, ``gmv`` (list value of the orders
placed from cards, per day of the window), ``pre_clicks``, ``pre_orders``, ``pre_gmv`` (the
same unit's behaviour before: clicks, purchases and their value in the pre-period events, 0
when none) and ``arm``. Metrics (``METRICS``): CTR = clicks / impressions, CVR = orders /
clicks, GMV per viewer-day (a mean over rows), AOV = GMV / orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.experiments.analysis import Metric
from recsys.experiments.assignment import Experiment, attach_arms

METRICS = (
    Metric("ctr", "clicks", "impressions", covariate="pre_clicks"),
    Metric("cvr", "orders", "clicks", covariate="pre_orders"),
    Metric("gmv_per_viewer", "gmv", covariate="pre_gmv"),
    Metric("aov", "gmv", "orders", covariate="pre_gmv"),
)
IMPRESSION_COLUMNS = ("user_id", "streamer_id", "click", "purchase", "amount", "coupon_value")
EXPOSURE_COLUMNS = ("unit", "experiment", "arm", "ts")
PRE = {"click": "pre_clicks", "purchase": "pre_orders"}


def keys_of(experiment: Experiment) -> list[str]:
    """The columns naming one analysis row."""
    return ["user_id"] if experiment.unit == "viewer" else ["streamer_id", "user_id"]


def cluster_of(experiment: Experiment) -> str | None:
    return None if experiment.unit == "viewer" else "streamer_id"


def read_parts(folder: str | Path, table: str, columns: Sequence[str] = ()) -> pd.DataFrame:
    """Every ``part-<day>.parquet`` of ``folder/table`` with a ``day`` column; a clear error
    naming the folder, or the file and column, when something is missing."""
    parts = sorted((Path(folder) / table).glob("part-*.parquet"))
    if not parts:
        raise FileNotFoundError(f"{Path(folder) / table}: no day parts (part-<day>.parquet)")
    frames = []
    for part in parts:
        frame = pd.read_parquet(part)
        if missing := [c for c in columns if c not in frame.columns]:
            raise KeyError(f"{part}: missing columns {missing}")
        frames.append(frame.assign(day=int(part.stem.split("-")[1])))
    return pd.concat(frames, ignore_index=True)


def exposure_log(folder: str | Path, experiment: Experiment, days: Sequence[int]) -> pd.DataFrame:
    """The experiment's exposures over ``days``; refuses logs whose exposure log is missing
    or lacks some of those days (the arms of their units would be unknown)."""
    where = Path(folder) / "exposures"
    if not where.is_dir():
        raise FileNotFoundError(
            f"{where}: no exposure log; an A/B analysis needs one row per exposed unit "
            f"({', '.join(EXPOSURE_COLUMNS)}) from the assignment at serving time"
        )
    log = read_parts(folder, "exposures", EXPOSURE_COLUMNS)
    log = log.loc[log["experiment"] == experiment.name]
    if log.empty:
        raise ValueError(f"{where}: no exposures of experiment {experiment.name!r}")
    if missing := sorted(set(days) - set(log["day"].tolist())):
        raise ValueError(f"{where}: experiment {experiment.name!r} has no exposures on days "
                         f"{missing}, which have impressions; the log is incomplete")  # fmt: skip
    return log.loc[log["day"].isin(days)]


def _pre_period(events: pd.DataFrame | None, keys: list[str]) -> pd.DataFrame:
    """Per key: clicks, purchases and their list value in the pre-period events."""
    cols = ["pre_clicks", "pre_orders", "pre_gmv"]
    if events is None or events.empty:
        return pd.DataFrame(columns=keys + cols)
    ev = events.loc[events["event_type"].isin(list(PRE))].dropna(subset=keys)
    ev = ev.astype({k: np.int64 for k in keys})
    for kind, name in PRE.items():
        ev[name] = (ev["event_type"] == kind).astype(np.float64)
    bought = ev["event_type"] == "purchase"
    value = ev["amount"].fillna(0.0) + ev["coupon_value"].fillna(0.0)
    ev["pre_gmv"] = np.where(bought, value, 0.0)
    return ev.groupby(keys, as_index=False)[cols].sum()


def unit_table(
    folder: str | Path,
    experiment: Experiment,
    *,
    pre_events: pd.DataFrame | None = None,
    days: Sequence[int] | None = None,
) -> pd.DataFrame:
    """One row per analysis unit of ``experiment`` over ``days`` (default: every day with
    impressions), with its arm, outcome sums and pre-period covariates."""
    imp = read_parts(folder, "impressions", IMPRESSION_COLUMNS)
    days = sorted(set(imp["day"].tolist())) if days is None else sorted(days)
    if not days:
        raise ValueError(f"{folder}: no days to analyse")
    imp = imp.loc[imp["day"].isin(days)]
    keys = keys_of(experiment)
    cards = imp.assign(impressions=1.0, clicks=imp["click"].astype(np.float64),
                       orders=imp["purchase"].astype(np.float64),
                       gmv=np.where(imp["purchase"], imp["amount"] + imp["coupon_value"], 0.0)
                       / len(days))  # fmt: skip
    rows = cards.groupby(keys, as_index=False)[["impressions", "clicks", "orders", "gmv"]].sum()
    if experiment.unit == "viewer":  # an exposed viewer with no card shown still counts
        viewers = read_parts(folder, "requests", ("user_id",))
        seen = viewers.loc[viewers["day"].isin(days), ["user_id"]].drop_duplicates()
        rows = seen.merge(rows, on="user_id", how="left").fillna(0.0)
    pre = _pre_period(pre_events, keys)
    rows = rows.merge(pre, on=keys, how="left")
    rows[list(pre.columns.drop(keys))] = rows[list(pre.columns.drop(keys))].fillna(0.0)
    log = exposure_log(folder, experiment, days)
    unit = "user_id" if experiment.unit == "viewer" else "streamer_id"
    out = attach_arms(rows, log, experiment.name, unit=unit)
    # Units outside the experiment's traffic are never exposed; any other unit must be.
    lost = rows.loc[~rows[unit].isin(out[unit]), unit].drop_duplicates().to_numpy(np.int64)
    if (inside := lost[experiment.assign(lost) >= 0]).size:
        raise ValueError(f"{folder}: {inside.size} units of experiment {experiment.name!r} are in "
                         f"the logs but have no exposure, e.g. {inside[:5].tolist()}")  # fmt: skip
    return out.reset_index(drop=True)


def true_values(
    folder: str | Path,
    experiment: Experiment,
    units: pd.DataFrame,
    metrics: Sequence[Metric] = METRICS,
    days: Sequence[int] | None = None,
) -> pd.DataFrame | None:
    """Each metric's true value under each arm (``metric``, ``arm``, ``true_value``) from the
    market's counterfactual truth over the rows of ``units`` (None without ``truth/arms``)."""
    if not (Path(folder) / "truth" / "arms").is_dir():
        return None
    truth = read_parts(folder, "truth/arms", ("arm", "p_click", "p_buy", "price"))
    days = sorted(set(truth["day"].tolist())) if days is None else sorted(days)
    truth = truth.loc[truth["day"].isin(days)]
    keys = keys_of(experiment)
    p_order = truth["p_click"] * truth["p_buy"]
    truth = truth.assign(impressions=1.0, clicks=truth["p_click"], orders=p_order,
                         gmv=p_order * truth["price"] / len(days))  # fmt: skip
    rows = []
    for arm in experiment.arm_names:
        mine = truth.loc[truth["arm"] == arm]
        sums = mine.groupby(keys)[["impressions", "clicks", "orders", "gmv"]].sum()
        sums = sums.reindex(pd.MultiIndex.from_frame(units[keys]) if len(keys) > 1
                            else pd.Index(units[keys[0]]), fill_value=0.0)  # fmt: skip
        for m in metrics:
            den = float(sums[m.denominator].sum()) if m.denominator else float(len(units))
            value = float(sums[m.numerator].sum()) / den if den > 0 else float("nan")
            rows.append({"metric": m.name, "arm": arm, "true_value": value})
    return pd.DataFrame(rows)
