"""Several policies on the same market days: one table of true and logged KPIs with intervals.

Each policy runs in its own market over the same world, from the same day: viewers, their app
openings and the response draws do not depend on the policy, so the arms differ only by what
the policies did. Each row holds the arm's true GMV per viewer-day (the expected list value of
the orders its slates lead to, from the planted truth), CTR and CVR with 95% intervals, and
its paired gain in true GMV per viewer-day over a reference arm (an interval over viewers of
the per-viewer differences, tighter than the two arms' own intervals).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import pandas as pd

from recsys.market.env import Market, MarketConfig
from recsys.market.policy import Policy
from recsys.market.rounds import paired_gain, round_row

COLUMNS = ("arm", "true_gmv_per_viewer", "true_gmv_lo", "true_gmv_hi", "ctr", "ctr_lo",
           "ctr_hi", "cvr", "cvr_lo", "cvr_hi", "gain", "gain_lo", "gain_hi", "viewers",
           "impressions")  # fmt: skip


def head_to_head(
    config: MarketConfig,
    policies: Mapping[str, Policy | Callable[[Market], Policy]],
    *,
    days: int,
    out_dir: str | Path,
    reference: str | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Run every policy ``days`` days from ``config.start_day`` (each in ``out_dir/<arm>``) and
    compare them; ``reference`` (default: the last arm) is the arm gains are measured against.
    A policy may come as a function of its market (e.g. an oracle reading its planted truth)."""
    if not policies:
        raise ValueError("head_to_head: no policies to compare")
    reference = list(policies)[-1] if reference is None else reference
    if reference not in policies:
        raise ValueError(
            f"head_to_head: reference arm {reference!r} is not one of {list(policies)}"
        )
    out = Path(out_dir)
    markets = {arm: Market(config, out / arm) for arm in policies}
    n_days = next(iter(markets.values())).n_days
    ran = range(config.start_day, min(config.start_day + days, n_days))
    if len(ran) == 0:
        raise ValueError(f"head_to_head: the world has no days from day {config.start_day}")
    for arm, market in markets.items():
        policy = policies[arm]
        policy = policy if isinstance(policy, Policy) else policy(market)
        market.run(policy, days=len(ran), progress=progress)
    rows = []
    for arm, market in markets.items():
        gain = paired_gain(market.out, markets[reference].out, ran)
        rows.append({"arm": arm, **round_row(market.out, ran), "gain": gain["gain"],
                     "gain_lo": gain["lo"], "gain_hi": gain["hi"]})  # fmt: skip
    return pd.DataFrame(rows)[list(COLUMNS)]


def starting_on(config: MarketConfig, ts: int) -> MarketConfig:
    """``config`` starting on the day that holds ``ts`` (e.g. a model's test cut)."""
    sim = config.sim_config()
    first = sim.chunk_window(0)[0]
    return replace(config, start_day=max(0, (int(ts) - first) // 86_400))


def interval_cell(row, name: str, *, value: str = "", scale: float = 1.0, digits: int = 3) -> str:
    """``value [lo, hi]`` of a row's KPI ``name`` (its value column ``value`` when named
    otherwise, and ``<name>_lo`` / ``<name>_hi``), times ``scale``."""
    v, lo, hi = (row.get(c, float("nan")) * scale for c in (value or name, f"{name}_lo",
                                                             f"{name}_hi"))  # fmt: skip
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def markdown(table: pd.DataFrame, reference: str) -> str:
    """The comparison as a markdown table: value [95% interval] per KPI."""
    head = ["policy", "true GMV / viewer-day", f"gain vs {reference}", "CTR %", "CVR %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.to_dict("records"):
        gain = "-" if row["arm"] == reference else interval_cell(row, "gain")
        cells = [row["arm"], interval_cell(row, "true_gmv", value="true_gmv_per_viewer", digits=2),
                 gain, interval_cell(row, "ctr", scale=100, digits=2),
                 interval_cell(row, "cvr", scale=100, digits=2)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
