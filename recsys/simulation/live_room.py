"""A day of live rooms with planted questions and incidents, laid over a written world.

``live_room_day(world_dir, day)`` reads one day of a world that ``recsys-simulate`` wrote and
returns the events a live-room dashboard would see, with the answer key beside them. The
world's own files are never changed; the overlay draws from its own seed stream
(``SeedSequence(seed, spawn_key=(3, day))``), so it adds nothing to the world's bytes.

What it plants:

* **questions**: every comment is re-rendered (``questions.py``): a question with probability
  ``question_share``, its intent drawn from the room's planted mix (three hot intents with
  ``hot_weights``, the rest sharing what remains), otherwise a chat line;
* **engagement drops**: from ``start`` for ``drop_minutes`` only ``drop_keep`` of the room's
  interactions (comments, likes, shares, follows, clicks, carts, claims) happen;
* **attention spikes**: on the product on show at ``start``, ``spike_factor`` x the viewers
  online then plus ``spike_min`` extra clicks a minute (a ``spike_cart_share`` of them carts)
  from the room's audience, for ``spike_minutes``;
* **question bursts**: ``burst_askers`` viewers of the room ask one intent within
  ``burst_minutes``.

Incidents go only to rooms busy enough to notice them (``min_rate`` events a minute, at least
``min_minutes`` long; ``incident_share`` of those), one of each kind per chosen room, at least
``gap_minutes`` apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.simulation.questions import CHAT_LABEL, INTENTS, render

LIVE = 3  # seed stream key, after world (0), schedule (1) and chunks (2)
INTERACTIONS = ("comment", "like", "share", "follow", "click", "cart", "coupon_claim")
INCIDENT_KINDS = ("drop", "spike", "burst")
NEW_ID_BASE = 1 << 40  # ids of planted events: far above any world's event ids
DAY_IDS = 1 << 28  # new ids per day


@dataclass(frozen=True)
class LiveRoomPlan:
    question_share: float = 0.6
    hot_weights: tuple[float, float, float] = (0.4, 0.25, 0.15)
    min_rate: float = 8.0
    min_minutes: int = 90
    incident_share: float = 0.6
    gap_minutes: int = 20
    drop_minutes: int = 10
    drop_keep: float = 0.1
    spike_minutes: int = 3
    spike_factor: float = 1.5
    spike_min: int = 15
    spike_cart_share: float = 0.4
    burst_minutes: int = 3
    burst_askers: int = 25


@dataclass(frozen=True)
class LiveRoomDay:
    events: pd.DataFrame  # the world's event columns, sorted by (ts, event_id)
    showcase: pd.DataFrame  # session_id, product_id, start_ts, end_ts of the day's rooms
    sessions: pd.DataFrame  # session_id, streamer_id, start_ts, end_ts
    questions: pd.DataFrame  # event_id, session_id, user_id, ts, intent (-1 = chat)
    incidents: pd.DataFrame  # session_id, kind, start_ts, end_ts, product_id, intent
    hot_intents: pd.DataFrame  # session_id, rank (0..2), intent


def live_room_day(world_dir, day: int, plan: LiveRoomPlan = LiveRoomPlan()) -> LiveRoomDay:
    """The live-room view of ``day`` of the world in ``world_dir`` (see the module docstring)."""
    folder = Path(world_dir)
    part = folder / "events" / f"part-{day:05d}.parquet"
    if not part.exists():
        found = sorted(p.name for p in (folder / "events").glob("part-*.parquet"))
        raise FileNotFoundError(f"{part}: no such day in the world (parts: {found[:3]}...)")
    seed = json.loads((folder / "manifest.json").read_text())["seed"]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(LIVE, day)))
    events = pd.read_parquet(part)
    events = events[events["session_id"].notna()].reset_index(drop=True)
    sessions = pd.read_parquet(folder / "live_sessions.parquet")
    sessions = sessions[sessions["session_id"].isin(events["session_id"].unique())]
    showcase = pd.read_parquet(folder / "showcase.parquet")
    showcase = showcase[showcase["session_id"].isin(sessions["session_id"])]
    hot, mix = _room_mixes(rng, sessions["session_id"].to_numpy(), plan)
    chosen = _incident_rooms(rng, events, sessions, plan)
    events, questions = _render_comments(rng, events, mix, plan)
    ids = NEW_ID_BASE + day * DAY_IDS  # this day's own range of new event ids
    events, questions, incidents = _plant(rng, events, questions, chosen, showcase, plan, ids)
    events = events.sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)
    return LiveRoomDay(
        events=events,
        showcase=showcase.reset_index(drop=True),
        sessions=sessions.reset_index(drop=True),
        questions=questions.sort_values("event_id").reset_index(drop=True),
        incidents=incidents,
        hot_intents=hot,
    )


def _room_mixes(rng, session_ids: np.ndarray, plan: LiveRoomPlan):
    """Each room's three hot intents and its intent probabilities (session -> (n_intents,))."""
    n = len(INTENTS)
    rest = (1.0 - sum(plan.hot_weights)) / (n - 3)
    rows, mix = [], {}
    for sid in session_ids.tolist():
        order = rng.permutation(n)
        p = np.full(n, rest)
        p[order[:3]] = plan.hot_weights
        mix[sid] = p / p.sum()
        rows += [(sid, rank, INTENTS[order[rank]]) for rank in range(3)]
    return pd.DataFrame(rows, columns=["session_id", "rank", "intent"]), mix


def _render_comments(rng, events: pd.DataFrame, mix: dict, plan: LiveRoomPlan):
    is_comment = (events["event_type"] == "comment").to_numpy()
    sid = events.loc[is_comment, "session_id"].to_numpy(dtype=np.int64)
    probs = np.stack([mix[s] for s in sid.tolist()]) if len(sid) else np.zeros((0, len(INTENTS)))
    cdf = np.cumsum(probs, axis=1)
    intent = np.minimum((cdf < rng.random(len(sid))[:, None]).sum(axis=1), len(INTENTS) - 1)
    label = np.where(rng.random(len(sid)) < plan.question_share, intent, CHAT_LABEL)
    rendered = render(rng, label)
    events = events.copy()
    events.loc[is_comment, "comment"] = rendered.text
    questions = events.loc[is_comment, ["event_id", "session_id", "user_id", "ts"]].copy()
    questions["session_id"] = questions["session_id"].astype(np.int64)
    questions["intent"] = rendered.label
    return events, questions


def _incident_rooms(rng, events, sessions, plan: LiveRoomPlan) -> pd.DataFrame:
    span = (sessions["end_ts"] - sessions["start_ts"]).to_numpy() / 60.0
    counts = events.groupby("session_id").size().reindex(sessions["session_id"]).to_numpy()
    busy = (counts / np.maximum(span, 1.0) >= plan.min_rate) & (span >= plan.min_minutes)
    return sessions[busy & (rng.random(len(sessions)) < plan.incident_share)]


def _plant(rng, events, questions, chosen, showcase, plan: LiveRoomPlan, next_id: int):
    added, incidents = [], []
    for row in chosen.itertuples(index=False):
        drop_at, spike_at, burst_at = _incident_starts(rng, row.start_ts, row.end_ts, plan)
        room = events[events["session_id"] == row.session_id]
        events, questions = _drop(rng, events, questions, row.session_id, drop_at, plan)
        spike, product = _spike(rng, room, showcase, row, spike_at, plan)
        burst, intent = _burst(rng, room, row, burst_at, plan)
        incidents += [
            (row.session_id, "drop", drop_at, drop_at + 60 * plan.drop_minutes, None, None),
            (row.session_id, "spike", spike_at, spike_at + 60 * plan.spike_minutes, product, None),
            (row.session_id, "burst", burst_at, burst_at + 60 * plan.burst_minutes, None, intent),
        ]
        for new in (spike, burst):
            new["event_id"] = np.arange(next_id, next_id + len(new), dtype=np.int64)
            next_id += len(new)
            added.append(new)
        burst_q = burst[["event_id", "session_id", "user_id", "ts"]]
        questions = pd.concat([questions, burst_q.assign(intent=INTENTS.index(intent))])
    dtypes = events.dtypes.to_dict()
    events = pd.concat([events, *added], ignore_index=True).astype(dtypes)
    columns = ["session_id", "kind", "start_ts", "end_ts", "product_id", "intent"]
    return events, questions, pd.DataFrame(incidents, columns=columns)


def _incident_starts(rng, start: int, end: int, plan: LiveRoomPlan) -> np.ndarray:
    """Three starts in random order, ``gap_minutes`` apart, clear of the room's first and last
    ``gap_minutes`` (the opening rush and the closing drift)."""
    gap = 60 * plan.gap_minutes
    slack = max(end - start - 4 * gap - 60 * plan.drop_minutes, 0)
    offsets = np.sort(rng.random(3)) * slack + gap * (1 + np.arange(3))
    return (start + offsets.astype(np.int64))[rng.permutation(3)]


def _drop(rng, events, questions, session_id, start, plan: LiveRoomPlan):
    end = start + 60 * plan.drop_minutes
    ts, typ = events["ts"].to_numpy(), events["event_type"].to_numpy()
    inside = (events["session_id"] == session_id).to_numpy() & (ts >= start) & (ts < end)
    lost = inside & np.isin(typ, INTERACTIONS) & (rng.random(len(ts)) >= plan.drop_keep)
    gone = set(events.loc[lost, "event_id"].tolist())
    return events[~lost], questions[~questions["event_id"].isin(gone)]


def _spike(rng, room, showcase, session, start, plan: LiveRoomPlan):
    on_show = showcase[
        (showcase["session_id"] == session.session_id)
        & (showcase["start_ts"] <= start)
        & (showcase["end_ts"] > start)
    ]
    product = int(on_show["product_id"].iloc[0])
    before = room[room["ts"] < start]
    online = int((before["event_type"] == "enter").sum() - (before["event_type"] == "leave").sum())
    n = int(round(plan.spike_minutes * (plan.spike_factor * max(online, 0) + plan.spike_min)))
    users = rng.choice(room["user_id"].unique(), n)
    ts = start + np.sort(rng.integers(0, 60 * plan.spike_minutes, n))
    kind = np.where(rng.random(n) < plan.spike_cart_share, "cart", "click")
    frame = pd.DataFrame({"ts": ts, "user_id": users, "event_type": kind})
    return frame.assign(
        session_id=session.session_id, streamer_id=session.streamer_id, product_id=product
    ), product


def _burst(rng, room, session, start, plan: LiveRoomPlan):
    intent = INTENTS[int(rng.integers(len(INTENTS)))]
    audience = room["user_id"].unique()
    users = rng.choice(audience, min(plan.burst_askers, len(audience)), replace=False)
    ts = start + np.sort(rng.integers(0, 60 * plan.burst_minutes, len(users)))
    text = render(rng, np.full(len(users), INTENTS.index(intent))).text
    frame = pd.DataFrame({"ts": ts, "user_id": users, "event_type": "comment", "comment": text})
    return frame.assign(session_id=session.session_id, streamer_id=session.streamer_id), intent
