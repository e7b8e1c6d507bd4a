"""The aggregator's numbers recomputed in one pass over a plain event table (pandas).

``batch_snapshot(events, room, lateness_s=...)`` applies the aggregator's rules to the whole
table at once: rows in arrival order, the first copy of an event id counts, a row older than
the room's largest earlier on-time event time minus the lateness is too late, and every
window is counted from scratch. It exists to check the streaming aggregator (a test holds
them equal) and to recompute a room offline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PRODUCT_KINDS = ("click", "cart")
COUNTED = {
    "enter": "enters",
    "leave": "leaves",
    "comment": "comments",
    "like": "likes",
    "share": "shares",
    "follow": "follows",
    "click": "clicks",
    "cart": "carts",
    "coupon_claim": "coupon_claims",
    "purchase": "orders",
}


def accepted_events(events: pd.DataFrame, *, lateness_s: int) -> pd.DataFrame:
    """Rows (arrival order) the aggregator folds in: first copies, not too late."""
    first = events[~events.duplicated("event_id", keep="first")]
    keep = []
    for _, room in first.groupby("session_id", sort=False):
        ts = room["ts"].to_numpy()
        best, ok = -1, np.zeros(len(ts), dtype=bool)
        for i, t in enumerate(ts.tolist()):
            ok[i] = t >= best - lateness_s
            best = max(best, t) if ok[i] else best
        keep.append(room.index[ok])
    index = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
    return first.loc[index]


def batch_snapshot(events: pd.DataFrame, room: int, *, lateness_s: int, windows=(1, 5, 15)) -> dict:
    """The aggregator's ``snapshot(room)`` numbers for the events of ``room`` (see above)."""
    ev = accepted_events(events, lateness_s=lateness_s)
    ev = ev[ev["session_id"] == room]
    ev = ev.assign(minute=ev["ts"] // 60)
    minute = int(ev["ts"].max()) // 60
    shows = ev[ev["event_type"] == "present"].sort_values(["ts", "event_id"])
    net = (ev["event_type"] == "enter").astype(int) - (ev["event_type"] == "leave").astype(int)

    def online(m: int) -> float:
        return max(float(net[ev["minute"] <= m].sum()), 0.0)

    def on_show(m: int) -> int:
        before = shows[shows["ts"] < (m + 1) * 60]
        return int(before["product_id"].iloc[-1]) if len(before) else -1

    def window(k: int) -> dict:
        part = ev[(ev["minute"] > minute - k) & (ev["minute"] <= minute)]
        out = {name: float((part["event_type"] == kind).sum()) for kind, name in COUNTED.items()}
        out["gmv"] = float(part.loc[part["event_type"] == "purchase", "amount"].sum())
        out["dwell_s"] = float(part.loc[part["event_type"] == "leave", "dwell_s"].sum())
        span = range(minute - k + 1, minute + 1)
        exposure = sum(online(m) for m in span)
        clicked = sum(
            (
                (part["minute"] == m)
                & (part["event_type"] == "click")
                & (part["product_id"] == on_show(m))
            ).sum()
            for m in span
        )
        out.update(
            minutes=k,
            online=online(minute),
            entries_per_min=out["enters"] / k,
            orders_per_min=out["orders"] / k,
            gmv_per_min=out["gmv"] / k,
            mean_dwell_s=out["dwell_s"] / out["leaves"] if out["leaves"] else None,
            viewer_minutes=exposure,
            ctr_on_show=float(clicked) / exposure if exposure else None,
        )
        return out

    return {
        "room": room,
        "watermark": int(ev["ts"].max()),
        "minute": minute,
        "on_show": on_show(minute),
        "windows": {str(k): window(k) for k in windows},
    }
