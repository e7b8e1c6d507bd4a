"""The study's numbers: increments over no-send with paired intervals, and the must-show checks.

Per viewer and arm over the evaluated days: entries into rooms (return visits), GMV, messages,
opens, withdrawn consents, and the most pushes on one day. An arm's incremental visits (GMV)
are its per-viewer differences from no-send (common random numbers, ``recsys.reach.study``),
their mean and 95% interval from ``recsys.experiments.analysis.compare`` against a zero
control; totals are means times viewers. "Keeps 90% of blast's increment" is judged on the
per-viewer difference ``(learned - no_send) - 0.9 (blast - no_send)``, whose interval is given
too. The send-time experiment (randomised per message) compares the open rates of the messages
sent at the chosen time and at the trigger's moment, over the messages whose two times differ
(known before the coin); copy variants (randomised per viewer) compare opens per message per
viewer with the delta method.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pandas as pd

from recsys.experiments.analysis import Estimate, Sample, compare

KEEP = 0.9
SEND_SHARE = 1 / 3
PUSHES_PER_DAY = 2


def per_viewer(logs: dict[str, pd.DataFrame], users: np.ndarray, clock) -> pd.DataFrame:
    ev, msg = logs["events"], logs["messages"]
    out = pd.DataFrame(index=pd.Index(users, name="user_id"))
    enter = ev.loc[ev["event_type"] == "enter"].groupby("user_id").size()
    gmv = ev.loc[ev["event_type"] == "purchase"].groupby("user_id")["amount"].sum()
    out["entries"] = enter.reindex(users).fillna(0).to_numpy(np.float64)
    out["gmv"] = gmv.reindex(users).fillna(0.0).to_numpy(np.float64)
    g = msg.groupby("user_id")
    for col, s in (("messages", g.size()), ("opens", g["opened"].sum()),
                   ("unsubscribes", g["unsubscribed"].sum())):  # fmt: skip
        out[col] = s.reindex(users).fillna(0).to_numpy(np.float64)
    push = msg.loc[msg["channel"] == "push"]
    per_day = push.groupby(["user_id", clock.day_start(push["ts"].to_numpy())]).size()
    out["max_push_day"] = per_day.groupby(level=0).max().reindex(users).fillna(0).to_numpy()
    return out


def paired(diff: np.ndarray, metric: str, arm: str, control: str, alpha: float) -> Estimate:
    """The mean per-viewer difference with its t-interval (a zero control adds no variance)."""
    est = compare(Sample(np.asarray(diff, np.float64)), Sample(np.zeros(len(diff))),
                  metric=metric, arm=arm, control_name=control, alpha=alpha)  # fmt: skip
    return replace(est, method="paired t (common random numbers)")


def _row(e: Estimate, n: int) -> dict:
    keep = ("metric", "arm", "control", "method", "estimable", "reason", "diff", "ci_lo",
            "ci_hi", "p_value")  # fmt: skip
    row = {k: v for k, v in asdict(e).items() if k in keep}
    row.update(total=e.diff * n, total_lo=e.ci_lo * n, total_hi=e.ci_hi * n)
    return row


def increments(tables: dict[str, pd.DataFrame], alpha: float) -> pd.DataFrame:
    """Each arm's incremental entries, GMV, messages and withdrawn consents over no-send."""
    base, rows = tables["no_send"], []
    for arm, t in tables.items():
        if arm == "no_send":
            continue
        for metric in ("entries", "gmv", "messages", "unsubscribes"):
            diff = t[metric].to_numpy() - base[metric].to_numpy()
            rows.append(_row(paired(diff, metric, arm, "no_send", alpha), len(t)))
    return pd.DataFrame(rows)


def keeps(tables: dict[str, pd.DataFrame], alpha: float) -> pd.DataFrame:
    """learned - no_send - KEEP x (blast - no_send), per viewer, for entries and GMV."""
    base, rows = tables["no_send"], []
    for metric in ("entries", "gmv"):
        diff = tables["learned"][metric].to_numpy() - base[metric].to_numpy() - KEEP * (
            tables["blast"][metric].to_numpy() - base[metric].to_numpy())  # fmt: skip
        rows.append(_row(paired(diff, f"{metric}: learned - {KEEP} x blast", "learned", "blast",
                                alpha), len(base)))  # fmt: skip
    return pd.DataFrame(rows)


def open_rate_split(decisions: pd.DataFrame, messages: pd.DataFrame, column: str, arm: str,
                    control: str, alpha: float) -> dict:  # fmt: skip
    """Open rate (opens / messages, per viewer) of ``column == arm`` against ``== control``."""
    d = decisions.loc[decisions["send"], ["trigger_id", column]]
    m = messages.merge(d, on="trigger_id", how="inner")
    g = m.groupby(["user_id", column])["opened"].agg(["sum", "count"]).reset_index()
    samples = {}
    for name in (arm, control):
        part = g.loc[g[column].astype(str) == str(name)]
        samples[name] = Sample(part["sum"].to_numpy(np.float64), part["count"].to_numpy(np.float64))
    est = compare(samples[arm], samples[control], metric=f"open rate by {column}", arm=str(arm),
                  control_name=str(control), alpha=alpha)  # fmt: skip
    return {k: v for k, v in asdict(est).items() if k in (
        "metric", "arm", "control", "method", "n_arm", "n_control", "estimable", "reason",
        "value_arm", "value_control", "diff", "ci_lo", "ci_hi", "p_value")}  # fmt: skip


def send_time_split(decisions: pd.DataFrame, messages: pd.DataFrame, alpha: float) -> dict:
    """Open rate of messages sent at the chosen time against at the trigger's moment, over the
    messages whose two times differ (randomised per message: each is a unit)."""
    d = decisions.loc[decisions["send"] & decisions["time_differs"], ["trigger_id", "send_time"]]
    m = messages.merge(d, on="trigger_id", how="inner")
    opened = {g: m.loc[m["send_time"] == g, "opened"].to_numpy(np.float64)
              for g in ("chosen", "trigger")}  # fmt: skip
    est = compare(Sample(opened["chosen"]), Sample(opened["trigger"]), metric="open rate by "
                  "send time (messages whose times differ)", arm="chosen", control_name="trigger",
                  alpha=alpha)  # fmt: skip
    out = {k: v for k, v in asdict(est).items() if k in (
        "metric", "arm", "control", "method", "n_arm", "n_control", "estimable", "reason",
        "value_arm", "value_control", "diff", "ci_lo", "ci_hi", "p_value")}  # fmt: skip
    out["messages_in_experiment"] = int(decisions["send"].sum())
    return out


def checks(tables: dict[str, pd.DataFrame], inc: pd.DataFrame, kept: pd.DataFrame,
           send_time: dict | None) -> dict:  # fmt: skip
    """The must-shows, each with its numbers and whether it holds."""
    def total(arm: str, metric: str) -> float:
        r = inc.loc[(inc["arm"] == arm) & (inc["metric"] == metric)]
        return float(r["total"].iloc[0])

    sends = {a: float(tables[a]["messages"].sum()) for a in ("learned", "blast")}
    unsub = {a: float(tables[a]["unsubscribes"].sum()) for a in ("learned", "blast")}
    out = {}
    for metric in ("entries", "gmv"):
        share = total("learned", metric) / total("blast", metric) if total("blast", metric) \
            else float("nan")  # fmt: skip
        out[f"keeps_{metric}"] = {"learned_over_blast": share, "holds": bool(share >= KEEP)}
    out["sends"] = {"learned_over_blast": sends["learned"] / max(sends["blast"], 1.0),
                    "holds": bool(sends["learned"] <= SEND_SHARE * sends["blast"])}  # fmt: skip
    most = float(tables["learned"]["max_push_day"].max())
    out["pushes_per_viewer_day"] = {"max": most, "holds": bool(most <= PUSHES_PER_DAY)}
    out["unsubscribes"] = {**unsub, "holds": bool(unsub["learned"] < unsub["blast"])}
    if send_time is not None:
        out["send_time_open_rate"] = {"diff": send_time["diff"], "ci_lo": send_time["ci_lo"],
                                      "holds": bool(send_time["ci_lo"] > 0)}  # fmt: skip
    out["kept_intervals"] = kept[["metric", "diff", "ci_lo", "ci_hi"]].to_dict("records")
    return out
