"""How well the live room's questions and triggers recover what the simulator planted.

* ``question_quality``: adjusted Rand index and purity of the clusters against the planted
  intents over every planted question (a question the detector missed counts as a cluster of
  its own), the detector's precision and recall, and per room whether the top-3 clusters by
  distinct askers carry the room's planted top-3 intents (by distinct askers). Rooms with
  fewer than ``min_questions`` questions, or a tie between the third and fourth intent, are
  left out and counted.
* ``trigger_quality``: a suggestion matches a planted incident of its kind in its room (the
  same product for a spike, a cluster whose askers are mostly of the planted intent for a
  burst) when it comes between the incident's start and ``within_s`` after its end; precision
  is matched suggestions over all, recall matched incidents over all, delay the time from an
  incident's start to its first match.
"""

from __future__ import annotations

import time
from dataclasses import replace
from math import comb

import numpy as np
import pandas as pd

from recsys.liveroom.events import from_frame
from recsys.liveroom.replay import FAST_TICK_S, replay_frame, ticks
from recsys.liveroom.rooms import LiveRooms, LiveRoomsConfig
from recsys.liveroom.triggers import Suggestion
from recsys.simulation.live_room import LiveRoomPlan, live_room_day
from recsys.simulation.questions import INTENTS


def adjusted_rand_index(truth, found) -> float:
    table = pd.crosstab(np.asarray(truth), np.asarray(found)).to_numpy()
    n = int(table.sum())
    pairs = sum(comb(int(x), 2) for x in table.ravel())
    rows = sum(comb(int(x), 2) for x in table.sum(axis=1))
    cols = sum(comb(int(x), 2) for x in table.sum(axis=0))
    expected = rows * cols / comb(n, 2)
    top = (rows + cols) / 2
    return float((pairs - expected) / (top - expected)) if top != expected else 1.0


def question_quality(
    questions: pd.DataFrame, assigned: pd.DataFrame, root, *, min_questions: int = 30
) -> dict:
    """``questions``: event_id, session_id, user_id, intent (-1 chat) of every comment;
    ``assigned``: event_id, cluster of every comment the store took for a question;
    ``root``: cluster -> its final cluster."""
    q = questions.merge(assigned, on="event_id", how="left")
    detected = q["cluster"].notna()
    asked = q["intent"] >= 0
    planted = q[asked].copy()
    found = planted["cluster"].fillna(-1).astype(np.int64).map(lambda c: root(c) if c >= 0 else c)
    missing = found < 0
    found[missing] = -2 - np.arange(int(missing.sum()))
    planted["found"] = found
    purity = planted.groupby("found")["intent"].agg(lambda s: s.value_counts().iloc[0]).sum()
    rooms = _top3(planted[~missing], min_questions)
    return {
        "questions": int(asked.sum()),
        "detect_recall": float((detected & asked).sum() / max(asked.sum(), 1)),
        "detect_precision": float((detected & asked).sum() / max(detected.sum(), 1)),
        "ari": adjusted_rand_index(planted["intent"], planted["found"]),
        "purity": float(purity / len(planted)),
        "clusters": int(planted.loc[~missing, "found"].nunique()),
        **rooms,
    }


def _top3(planted: pd.DataFrame, min_questions: int) -> dict:
    matched = judged = small = ties = 0
    for _, room in planted.groupby("session_id"):
        if len(room) < min_questions:
            small += 1
            continue
        truth = room.groupby("intent")["user_id"].nunique().sort_values(ascending=False)
        if len(truth) > 3 and truth.iloc[2] == truth.iloc[3]:
            ties += 1
            continue
        askers = room.groupby("found")["user_id"].nunique()
        top = askers.sort_values(ascending=False, kind="stable").index[:3]
        majority = room.groupby("found")["intent"].agg(lambda s: s.value_counts().index[0])
        judged += 1
        matched += set(majority[top]) == set(truth.index[:3])
    return {
        "top3_rooms": judged,
        "top3_match": matched / judged if judged else float("nan"),
        "top3_small_rooms": small,
        "top3_tied_rooms": ties,
    }


def trigger_quality(
    incidents: pd.DataFrame,
    suggestions: pd.DataFrame,
    *,
    within_s: int = 120,
    cluster_intent: dict | None = None,
) -> dict:
    """``suggestions``: room, ts, kind, product, cluster (``Suggestion.as_dict`` rows)."""
    cluster_intent = cluster_intent or {}
    hit = np.zeros(len(suggestions), dtype=bool)
    delays, per_kind, kind_delays = [], {}, {}
    for inc in incidents.itertuples(index=False):
        s = suggestions
        ok = (
            (s["room"] == inc.session_id)
            & (s["kind"] == inc.kind)
            & (s["ts"] >= inc.start_ts)
            & (s["ts"] <= inc.end_ts + within_s)
        ).to_numpy()
        if inc.kind == "spike":
            ok = ok & (s["product"] == inc.product_id).to_numpy()
        if inc.kind == "burst":
            intent = s["cluster"].map(cluster_intent).to_numpy()
            ok = ok & (intent == inc.intent)
        hit |= ok
        found = bool(ok.any())
        if found:
            delays.append(float(s.loc[ok, "ts"].min() - inc.start_ts))
            kind_delays.setdefault(inc.kind, []).append(delays[-1])
        per_kind.setdefault(inc.kind, []).append(found)
    out = {
        "incidents": len(incidents),
        "suggestions": len(suggestions),
        "precision": float(hit.mean()) if len(hit) else float("nan"),
        "recall": float(np.mean([f for v in per_kind.values() for f in v])),
        "median_delay_s": float(np.median(delays)) if delays else float("nan"),
        "p90_delay_s": float(np.percentile(delays, 90)) if delays else float("nan"),
    }
    for kind, found in per_kind.items():
        mine = (suggestions["kind"] == kind).to_numpy()
        out[f"{kind}_recall"] = float(np.mean(found))
        out[f"{kind}_precision"] = float(hit[mine].mean()) if mine.any() else float("nan")
        out[f"{kind}_median_delay_s"] = float(np.median(kind_delays.get(kind, [np.nan])))
    return out


def cluster_intents(questions: pd.DataFrame, assigned: pd.DataFrame, root) -> dict[int, str]:
    """Each final cluster's majority planted intent (its name for matching bursts)."""
    q = questions.merge(assigned, on="event_id")
    q = q[q["intent"] >= 0]
    q["root"] = q["cluster"].map(root)
    majority = q.groupby("root")["intent"].agg(lambda s: s.value_counts().index[0])
    return {int(c): INTENTS[int(i)] for c, i in majority.items()}


def evaluate_days(
    world_dir,
    days,
    config: LiveRoomsConfig | None = None,
    *,
    plan: LiveRoomPlan | None = None,
    tick_s: float = FAST_TICK_S,
) -> dict:
    """Replay ``days`` of a written world through a fresh store, ``tick_s`` of event time a
    batch; returns question and trigger quality, the suggestions and the events/s."""
    store = LiveRooms(replace(config or LiveRoomsConfig(), record_questions=True))
    plan = plan or LiveRoomPlan()
    questions, incidents, events, seconds = [], [], 0, 0.0
    for day in days:
        live = live_room_day(world_dir, day, plan)
        columns = from_frame(replay_frame(live)).columns
        began = time.perf_counter()
        for lo, hi in ticks(columns.ts, tick_s):
            store.ingest(columns.take(np.arange(lo, hi)))
        seconds += time.perf_counter() - began
        events += len(columns)
        questions.append(live.questions)
        incidents.append(live.incidents)
    questions, incidents = pd.concat(questions), pd.concat(incidents, ignore_index=True)
    assigned = pd.DataFrame(store.assigned, columns=["event_id", "cluster"])
    root = store.clusterer.root
    suggestions = pd.DataFrame(
        [s.as_dict() for s in store.history], columns=list(Suggestion.__dataclass_fields__)
    )
    suggestions["cluster"] = suggestions["cluster"].map(
        lambda c: root(int(c)) if pd.notna(c) else None
    )
    named = cluster_intents(questions, assigned, root)
    return {
        "questions": question_quality(questions, assigned, root),
        "triggers": trigger_quality(incidents, suggestions, cluster_intent=named),
        "suggestions": suggestions,
        "incidents": incidents,
        "events": events,
        "events_per_s": events / seconds if seconds else float("nan"),
        "unjudged_minutes": store.unjudged_minutes,
    }
