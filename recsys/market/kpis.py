"""Daily figures of a market run, from its logs alone, with 95% intervals over viewers.

Per day: ``viewers`` (distinct viewers with a request), ``requests``, ``impressions``, ``ctr``
(clicks per impression), ``cvr`` (purchases per click), ``orders``, ``gmv`` (list value of the
orders placed from slates), ``paid`` (what viewers paid for them), ``coupon_cost`` (face value
of redeemed granted coupons), ``all_gmv`` (list value of every purchase that day, the world's own
included), and per viewer-day ``gmv_per_viewer`` (observed) and ``true_gmv_per_viewer`` (the
expected list value of the orders the slates lead to: the sum over cards of the true click
probability x purchase probability x price). Interval columns end in ``_lo`` / ``_hi``: a normal
interval over viewers of the viewer-day totals (ratios by the delta method over viewers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

Z95 = 1.959963984540054


def _read(folder: Path, table: str) -> pd.DataFrame:
    parts = sorted((folder / table).glob("part-*.parquet"))
    if not parts:
        raise FileNotFoundError(f"{folder / table}: no logged days")
    return pd.concat([pd.read_parquet(p).assign(day=int(p.stem.split("-")[1])) for p in parts],
                     ignore_index=True)  # fmt: skip


def mean_interval(per_viewer: np.ndarray, n: int) -> tuple[float, float, float]:
    """Mean over ``n`` viewers of per-viewer totals (viewers absent from the array count 0)."""
    x = np.zeros(n)
    x[: len(per_viewer)] = per_viewer
    mean = float(x.mean()) if n else float("nan")
    half = Z95 * float(x.std(ddof=1)) / np.sqrt(n) if n > 1 else float("nan")
    return mean, mean - half, mean + half


def ratio_interval(num: np.ndarray, den: np.ndarray) -> tuple[float, float, float]:
    """Ratio of sums over viewers, with the delta-method interval; NaN when the denominator is
    zero (not estimable, never silently 0)."""
    n, total = len(den), float(den.sum())
    if n == 0 or total == 0:
        return float("nan"), float("nan"), float("nan")
    r = float(num.sum()) / total
    resid = (num - r * den) / den.mean()
    half = Z95 * float(resid.std(ddof=1)) / np.sqrt(n) if n > 1 else float("nan")
    return r, r - half, r + half


def _day(imp: pd.DataFrame, truth: pd.DataFrame, req: pd.DataFrame, ev: pd.DataFrame) -> dict:
    viewers = req["user_id"].unique()
    cards = imp.merge(truth, on=["request_id", "position"], how="left", validate="one_to_one")
    cards["true_gmv"] = cards["p_click"] * cards["p_buy"] * cards["price"]
    cards["gmv"] = np.where(cards["purchase"], cards["amount"] + cards["coupon_value"], 0.0)
    by = cards.groupby("user_id")[["click", "purchase", "gmv", "true_gmv"]].sum()
    by["impressions"] = cards.groupby("user_id").size()
    by = by.reindex(viewers, fill_value=0)
    out = {"viewers": len(viewers), "requests": len(req), "impressions": len(cards)}
    for name, num, den in (("ctr", "click", "impressions"), ("cvr", "purchase", "click")):
        out[name], out[f"{name}_lo"], out[f"{name}_hi"] = ratio_interval(
            by[num].to_numpy(float), by[den].to_numpy(float))  # fmt: skip
    for name in ("gmv", "true_gmv"):
        m, lo, hi = mean_interval(by[name].to_numpy(float), len(viewers))
        out[f"{name}_per_viewer"], out[f"{name}_per_viewer_lo"] = m, lo
        out[f"{name}_per_viewer_hi"] = hi
    bought = cards["purchase"].to_numpy(bool)
    granted = bought & (cards["grant_id"].to_numpy() >= 0)
    purchases = ev.loc[ev["event_type"] == "purchase"]
    out.update(
        orders=int(bought.sum()),
        gmv=float(cards["gmv"].sum()),
        paid=float(cards.loc[bought, "amount"].sum()),
        coupon_cost=float(cards.loc[granted, "coupon_value"].sum()),
        all_gmv=float((purchases["amount"] + purchases["coupon_value"].fillna(0.0)).sum()),
    )
    return out


def daily_kpis(folder: str | Path) -> pd.DataFrame:
    """One row per logged day of the market run in ``folder``."""
    folder = Path(folder)
    imp, truth = _read(folder, "impressions"), _read(folder, "truth/impressions")
    req, ev = _read(folder, "requests"), _read(folder, "events")
    rows = []
    for day in sorted(req["day"].unique()):
        pick = [t.loc[t["day"] == day].drop(columns="day") for t in (imp, truth, req, ev)]
        rows.append({"day": int(day), **_day(*pick)})
    return pd.DataFrame(rows)
