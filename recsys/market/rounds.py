"""What the closed loop needs between market days: data to retrain on, and a fair comparison.

``training_folder`` joins a world's own first days with a market run's days into one world
folder (links, no copies), so ``recsys-train data.path=...`` retrains on everything the platform
has logged so far. ``paired_gain`` compares two policies run on the same days of the same world
(same viewers and requests: arrivals and response draws do not depend on the policy) by each
viewer's true GMV, so the interval is over paired differences. ``plot_rounds`` draws the KPIs
over rounds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from recsys.market.kpis import Z95, mean_interval, ratio_interval

ENTITY_FILES = ("users.parquet", "streamers.parquet", "products.parquet",
                "live_sessions.parquet", "showcase.parquet", "vocab", "truth")  # fmt: skip


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target.resolve(), link)


def training_folder(world: Path, market: Path, start_day: int, out: Path) -> Path:
    """A world folder with ``world``'s entities and its events before ``start_day``, then every
    day ``market`` has logged."""
    (out / "events").mkdir(parents=True, exist_ok=True)
    for name in ENTITY_FILES:
        _link(world / name, out / name)
    for part in sorted((world / "events").glob("part-*.parquet")):
        if int(part.stem.split("-")[1]) < start_day:
            _link(part, out / "events" / part.name)
    for part in sorted((market / "events").glob("part-*.parquet")):
        _link(part, out / "events" / part.name)
    return out


def true_gmv_by_viewer(folder: Path, days: range) -> pd.Series:
    """Each viewer's true expected GMV from the slates of ``days`` (viewers with requests)."""
    per = []
    for day in days:
        name = f"part-{day:05d}.parquet"
        req = pd.read_parquet(folder / "requests" / name)
        imp = pd.read_parquet(folder / "impressions" / name)
        truth = pd.read_parquet(folder / "truth" / "impressions" / name)
        cards = imp.merge(truth, on=["request_id", "position"])
        value = (cards["p_click"] * cards["p_buy"] * cards["price"]).groupby(cards["user_id"])
        per.append(value.sum().reindex(req["user_id"].unique(), fill_value=0.0))
    return pd.concat(per).groupby(level=0).sum()


def paired_gain(a: Path, b: Path, days: range) -> dict:
    """Mean over viewers of (a's - b's) true GMV per viewer-day over ``days``, with its 95%
    interval; both runs saw the same viewers."""
    ga, gb = true_gmv_by_viewer(a, days), true_gmv_by_viewer(b, days)
    if not ga.index.sort_values().equals(gb.index.sort_values()):
        raise ValueError(f"paired_gain: {a} and {b} saw different viewers; not the same world")
    diff = (ga - gb.reindex(ga.index)).to_numpy() / len(days)
    mean, lo, hi = mean_interval(diff, len(diff))
    return {"gain": mean, "lo": lo, "hi": hi, "viewers": len(diff)}


def plot_rounds(rows: pd.DataFrame, path: Path) -> Path:
    """True GMV per viewer-day (with intervals), CTR and CVR of each arm over rounds."""
    fig = Figure(figsize=(13, 3.6))  # no pyplot: no GUI backend, no global state
    axes = fig.subplots(1, 3)
    for arm, g in rows.groupby("arm", sort=False):
        x = g["round"].to_numpy()
        axes[0].errorbar(x, g["true_gmv_per_viewer"], yerr=Z95 * g["true_gmv_se"], label=arm,
                         marker="o", capsize=3)  # fmt: skip
        axes[1].plot(x, g["ctr"], marker="o", label=arm)
        axes[2].plot(x, g["cvr"], marker="o", label=arm)
    titles = ("true GMV per viewer-day (yuan)", "CTR", "CVR (orders per click)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("round")
        ax.set_xticks(sorted(rows["round"].unique()))
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def round_row(folder: Path, days: range) -> dict:
    """One arm's KPIs over ``days``: true GMV per viewer-day (its standard error and 95%
    interval), and CTR and CVR pooled over the days with delta-method intervals over viewers."""
    g = true_gmv_by_viewer(folder, days) / len(days)
    x = g.to_numpy()
    imp = pd.concat([pd.read_parquet(folder / "impressions" / f"part-{d:05d}.parquet")
                     for d in days])  # fmt: skip
    by = imp.groupby("user_id").agg(n=("click", "size"), click=("click", "sum"),
                                    purchase=("purchase", "sum"))  # fmt: skip
    by = by.reindex(g.index, fill_value=0)
    gmv, lo, hi = mean_interval(x, len(x))
    row = {"true_gmv_per_viewer": gmv, "true_gmv_lo": lo, "true_gmv_hi": hi,
           "true_gmv_se": float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")}
    for name, num, den in (("ctr", "click", "n"), ("cvr", "purchase", "click")):
        row[name], row[f"{name}_lo"], row[f"{name}_hi"] = ratio_interval(
            by[num].to_numpy(float), by[den].to_numpy(float))  # fmt: skip
    return {**row, "viewers": len(x), "impressions": len(imp)}
