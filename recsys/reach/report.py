"""The reach study's record (``reach.json``), its table (``reach.md``) and the messages table.

``messages.parquet``: every trigger the learned policy was offered, with its decision, channel,
send time, reason, copy variant, text and, for the sent ones, what the viewer did (opened,
visited, unsubscribed, from the market's logs).
"""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.reach import analysis
from recsys.reach.study import ArmRun, StudyConfig, arm_logs


def study_record(runs: dict[str, ArmRun], study: StudyConfig) -> tuple[dict, pd.DataFrame]:
    """(the record, the learned policy's messages table)."""
    logs = {arm: arm_logs(run) for arm, run in runs.items()}
    users = pd.read_parquet(runs["no_send"].folder / "users.parquet")["user_id"].to_numpy()
    tables = {arm: analysis.per_viewer(lg, users, study.clock) for arm, lg in logs.items()}
    inc = analysis.increments(tables, study.alpha)
    arms = {arm: _arm_summary(tables[arm], lg, inc, arm) for arm, lg in logs.items()}
    record = {"study": _plain(study), "viewers": len(users), "days": runs["no_send"].days,
              "arms": arms, "increments": inc.to_dict("records")}  # fmt: skip
    table = pd.DataFrame()
    if {"learned", "blast"} <= set(runs):
        record["learned_vs_blast"] = analysis.keeps(tables, study.alpha).to_dict("records")
        send_time = None
        if "learned_time" in runs:
            lt = logs["learned_time"]
            send_time = analysis.send_time_split(lt["decisions"], lt["messages"], study.alpha)
            record["send_time_experiment"] = send_time
        learned = logs["learned"]
        record["copy_variants"] = analysis.open_rate_split(
            learned["decisions"], learned["messages"], "copy_variant", 1, 0, study.alpha)
        record["checks"] = analysis.checks(tables, inc, analysis.keeps(tables, study.alpha),
                                           send_time)  # fmt: skip
        policy = runs["learned"].policy
        record["model"] = policy.model.summary()
        record["reasons"] = learned["decisions"]["reason_code"].value_counts().to_dict()
        record["copy_faults"] = dict(Counter(policy.copy.faults))
        record["engine_faults"] = dict(+Counter(policy.learner.engine.faults))
        table = _messages_table(learned)
        record["examples"] = table.loc[table["send"], "text"].drop_duplicates().head(6).tolist()
    return record, table


def _arm_summary(t: pd.DataFrame, logs: dict, inc: pd.DataFrame, arm: str) -> dict:
    msg = logs["messages"]
    out = {"messages": int(t["messages"].sum()), "opens": int(t["opens"].sum()),
           "open_rate": float(t["opens"].sum() / max(t["messages"].sum(), 1)),
           "unsubscribes": int(t["unsubscribes"].sum()),
           "max_pushes_viewer_day": int(t["max_push_day"].max()),
           "channels": msg["channel"].value_counts().to_dict() if len(msg) else {},
           "cost": float(msg["cost"].sum()) if len(msg) else 0.0}  # fmt: skip
    for metric in ("entries", "gmv"):
        r = inc.loc[(inc["arm"] == arm) & (inc["metric"] == metric)]
        if len(r):
            out[f"incremental_{metric}"] = {k: float(r[k].iloc[0]) for k in
                                            ("total", "total_lo", "total_hi")}  # fmt: skip
    return out


def _messages_table(logs: dict) -> pd.DataFrame:
    outcome = logs["messages"][["trigger_id", "message_id", "opened", "visited", "unsubscribed"]]
    return logs["decisions"].merge(outcome, on="trigger_id", how="left")


def _plain(value):
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value


NOTES = (
    "Notes. Incremental visits are room entries, incremental GMV purchases, each an arm's "
    "per-viewer difference from no-send summed over viewers; every arm runs the same days of one "
    "explored market with the same draws, so the 95% intervals are paired t-intervals over "
    "viewers (`recsys.experiments.analysis.compare` against a zero control). Blast sends every "
    "trigger on the loudest channel the viewer consented to, at the trigger's moment; the rule "
    "sends followed-streamer triggers by push (in-app without push consent). The learned "
    "policy's caps and threshold come from `recsys/conf/reach.yaml`, chosen on another world "
    "(seed 1). The market's fatigue counts a viewer's messages of the seven days before, not of "
    "the same day. The send-time experiment is randomised per message; it is judged on the "
    "messages whose chosen time differs from the trigger's moment (known before the coin). "
    "The market plants no effect of the copy, so the copy-variant comparison is an A/A check. "
    "Coupon-expiry and lapsing-buyer triggers come from the engine; the market offers only "
    "followed-streamer and carted-item triggers, so the study has none of them.",
)


def _fmt(x: float, digits: int = 0) -> str:
    return "n/a" if x is None or x != x else f"{x:,.{digits}f}"


def markdown(record: dict, command: str) -> str:
    lines = [f"# Timely reach ({record['study']['preset']}, {len(record['days'])} days after "
             f"{record['study']['explore_days']} explored, {record['viewers']:,} viewers)", "",
             f"`{command}`", "",
             "| arm | messages | open rate | incremental visits (95% CI) | incremental GMV (95% "
             "CI) | unsubscribes | max pushes / viewer-day | cost |",
             "|---|" + "---:|" * 7]  # fmt: skip
    for arm, a in record["arms"].items():
        cells = [arm, _fmt(a["messages"]), _fmt(a["open_rate"], 3)]
        for metric in ("entries", "gmv"):
            i = a.get(f"incremental_{metric}")
            cells.append(f"{_fmt(i['total'])} [{_fmt(i['total_lo'])}, {_fmt(i['total_hi'])}]"
                         if i else "0 (baseline)")  # fmt: skip
        cells += [_fmt(a["unsubscribes"]), _fmt(a["max_pushes_viewer_day"]), _fmt(a["cost"], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    if "checks" in record:
        lines += ["", "| must-show | measured | holds |", "|---|---|---|"]
        for name, c in record["checks"].items():
            if name == "kept_intervals":
                continue
            shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in c.items()
                     if k != "holds"}  # fmt: skip
            lines.append(f"| {name} | {shown} | {'yes' if c['holds'] else 'no'} |")
        lines += ["", "Per-viewer (learned - no-send) - 0.9 x (blast - no-send), mean and 95% CI:"]
        for k in record["checks"]["kept_intervals"]:
            lines.append(f"- {k['metric']}: {k['diff']:.4f} [{k['ci_lo']:.4f}, {k['ci_hi']:.4f}]")
    for key in ("send_time_experiment", "copy_variants"):
        if key in record:
            e = record[key]
            lines.append(f"- {e['metric']}: {e['arm']} {e['value_arm']:.4f} vs {e['control']} "
                         f"{e['value_control']:.4f}, difference {e['diff']:.4f} "
                         f"[{e['ci_lo']:.4f}, {e['ci_hi']:.4f}] ({e['method']})")  # fmt: skip
    lines += ["", *NOTES]
    if "reasons" in record:
        lines += ["", f"Learned decisions by reason: {record['reasons']}",
                  f"Copy fallbacks: {record['copy_faults'] or 'none'}",
                  f"Trigger engine faults: {record.get('engine_faults') or 'none'}", "",
                  "Examples:"]
        lines += [f"- {t}" for t in record["examples"]]
    return "\n".join(lines) + "\n"


def write(record: dict, table: pd.DataFrame, out_dir: str | Path, command: str,
          model=None) -> dict:  # fmt: skip
    """The report, the messages table and (given) the learned ``ResponseModel`` as
    ``reach_model.pkl`` (what ``recsys-reach mode=replay`` decides with)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "reach.json", "md": out / "reach.md",
             "messages": out / "messages.parquet"}  # fmt: skip
    if model is not None:
        paths["model"] = out / "reach_model.pkl"
        with open(paths["model"], "wb") as f:
            pickle.dump(model, f)
    paths["json"].write_text(json.dumps(_plain(record), indent=2, ensure_ascii=False,
                                        default=str) + "\n")  # fmt: skip
    paths["md"].write_text(markdown(record, command))
    table.to_parquet(paths["messages"], index=False)
    return paths
