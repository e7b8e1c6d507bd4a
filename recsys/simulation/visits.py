"""Who enters which live room when, for one chunk (one day), fully vectorised.

Two channels bring viewers into rooms, then some viewers come back:

* browsing: a user opens the app ``Poisson(activity * browse_rate * weekend)`` times a day, at a
  local hour drawn from their hour profile, looking for a category drawn from their interest
  mix (with ``explore`` mass spread evenly). Among the rooms of that category live in that
  hour they pick one in proportion to ``popularity * minutes live in the hour``; the intent
  becomes a visit with probability ``1 - exp(-cell_appeal / ATTENTION_SCALE)``, so an hour with
  only weak rooms loses viewers. No room live: no visit.
* loyalty: when a trusted streamer goes live, the fan comes with probability
  ``1 - exp(-loyalty_rate * trust * activity * weekend * hour_affinity)`` where hour_affinity is
  24 x the fan's average hour weight over the session (1 for a flat profile).
* returns: after leaving, a viewer re-enters the same room with probability
  ``return_rate * (0.5 + interest + trust)`` after a gap of 1 min + Exp(15 min), up to
  ``RETURN_ROUNDS`` times, while the room is still live.

Dwell is lognormal with median ``DWELL_MEDIAN_S * (0.4 + 1.5 * interest + trust)``, capped by
the end of the session, so every visit lies inside its session window. Overlapping visits of
one user to one room are merged away (the later one is dropped), so enter/leave pairs of a
(user, session) alternate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.simulation.schedule import Schedule
from recsys.simulation.world import World

ATTENTION_SCALE = 1.0
DWELL_MEDIAN_S = 150.0
DWELL_SIGMA = 0.9
DWELL_MAX_S = 3 * 3600
RETURN_ROUNDS = 2
RETURN_GAP_MEAN_S = 900.0


@dataclass(frozen=True)
class Visits:
    user: np.ndarray  # (V,) user index
    session: np.ndarray  # (V,) session id
    enter: np.ndarray  # (V,) int64
    dwell: np.ndarray  # (V,) int64 seconds, >= 1; leave = enter + dwell <= session end
    interest: np.ndarray  # (V,) user's interest in the room's category
    trust: np.ndarray  # (V,) user's trust in the room's streamer

    def __len__(self) -> int:
        return len(self.user)


@dataclass(frozen=True)
class VisitModel:
    """Per-world sampling tables, built once and reused by every chunk."""

    slot_hours: np.ndarray  # (U, 24) hour profile re-indexed to chunk slots (slot 0 = 05:00)
    slot_cdf: np.ndarray  # (U, 24)
    intent_cdf: np.ndarray  # (U, C)

    @classmethod
    def build(cls, world: World, chunk_start_hour: int) -> VisitModel:
        hours = world.users.hours[:, (chunk_start_hour + np.arange(24)) % 24]
        explore = world.config.explore
        n_cat = world.users.interest.shape[1]
        intent = (1.0 - explore) * world.users.interest + explore / n_cat
        return cls(hours, _cdf(hours), _cdf(intent))


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights, axis=1)
    return cdf / cdf[:, -1:]


def _draw(cdf_rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One column per row of a row-normalised CDF matrix."""
    u = rng.random(len(cdf_rows))
    return np.minimum((cdf_rows <= u[:, None]).sum(axis=1), cdf_rows.shape[1] - 1)


def sample_visits(
    world: World, schedule: Schedule, model: VisitModel, day: int, rng: np.random.Generator
) -> Visits:
    config = world.config
    sessions = np.arange(schedule.day_offset[day], schedule.day_offset[day + 1])
    if len(sessions) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Visits(empty, empty, empty, empty, empty.astype(float), empty.astype(float))
    slot0 = config.chunk_window(day)[0] + 3600 * np.arange(24)
    lo = np.maximum(schedule.start[sessions, None], slot0[None, :])  # (J_d, 24)
    hi = np.minimum(schedule.end[sessions, None], slot0[None, :] + 3600)
    overlap = np.maximum(hi - lo, 0)
    boost = config.weekend_boost if config.weekday(day) >= 5 else 1.0
    user, session, enter = _browse(world, schedule, model, sessions, lo, overlap, boost, rng)
    u2, s2, e2 = _loyal(world, schedule, model, sessions, lo, overlap, boost, rng)
    user, session, enter = (
        np.concatenate([user, u2]),
        np.concatenate([session, s2]),
        np.concatenate([enter, e2]),
    )
    visits = _with_dwell(world, schedule, user, session, enter, rng)
    visits = _returns(world, schedule, visits, rng)
    return _drop_overlaps(visits)


def _browse(world, schedule, model, sessions, lo, overlap, boost, rng):
    n_cat = world.users.interest.shape[1]
    jj, kk = np.nonzero(overlap)  # live (session, hour slot) cells, session-major
    weight = schedule.popularity[sessions[jj]] * overlap[jj, kk] / 3600.0
    cell = world.streamers.category[schedule.streamer[sessions[jj]]] * 24 + kk
    order = np.argsort(cell, kind="stable")
    cum = np.cumsum(weight[order])
    total = np.bincount(cell, weights=weight, minlength=n_cat * 24)
    first = np.searchsorted(cell[order], np.arange(n_cat * 24))
    last = np.searchsorted(cell[order], np.arange(n_cat * 24), side="right") - 1
    base = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0.0)

    config = world.config
    n_intents = rng.poisson(world.users.activity * config.browse_rate * boost)
    user = np.repeat(np.arange(len(n_intents)), n_intents)
    want = _draw(model.intent_cdf[user], rng) * 24 + _draw(model.slot_cdf[user], rng)
    appeal = 1.0 - np.exp(-total[want] / ATTENTION_SCALE)
    keep = rng.random(len(user)) < appeal
    user, want = user[keep], want[keep]
    target = base[want] + rng.random(len(user)) * total[want]
    pos = np.clip(np.searchsorted(cum, target, side="right"), first[want], last[want])
    row = order[pos]
    enter = lo[jj[row], kk[row]] + np.floor(rng.random(len(user)) * overlap[jj[row], kk[row]])
    return user, sessions[jj[row]], enter.astype(np.int64)


def _loyal(world, schedule, model, sessions, lo, overlap, boost, rng):
    trust = world.trust
    live = np.full(world.config.n_streamers, -1, dtype=np.int64)
    live[schedule.streamer[sessions]] = np.arange(len(sessions))  # one session per streamer-day
    local = live[trust.streamer]
    m = local >= 0
    user, local, tau = trust.user[m], local[m], trust.value[m]
    joint = model.slot_hours[user] * overlap[local]  # (pairs, 24)
    affinity = 24.0 * joint.sum(axis=1) / overlap[local].sum(axis=1)
    rate = world.config.loyalty_rate * tau * world.users.activity[user] * boost * affinity
    come = rng.random(len(user)) < 1.0 - np.exp(-rate)
    user, local, joint = user[come], local[come], joint[come]
    slot = _draw(_cdf(joint), rng)
    width = overlap[local, slot]
    enter = lo[local, slot] + np.floor(rng.random(len(user)) * width)
    return user, sessions[local], enter.astype(np.int64)


def _with_dwell(world, schedule, user, session, enter, rng) -> Visits:
    streamer = schedule.streamer[session]
    interest = world.users.interest[user, world.streamers.category[streamer]]
    trust = world.trust.lookup(user, streamer)
    median = DWELL_MEDIAN_S * (0.4 + 1.5 * interest + trust)
    dwell = np.round(median * np.exp(DWELL_SIGMA * rng.standard_normal(len(user))))
    dwell = np.clip(
        dwell.astype(np.int64), 1, np.minimum(DWELL_MAX_S, schedule.end[session] - enter)
    )
    return Visits(user, session, enter, dwell, interest, trust)


def _returns(world, schedule, visits: Visits, rng) -> Visits:
    parts, last = [visits], visits
    for _ in range(RETURN_ROUNDS):
        p = np.minimum(world.config.return_rate * (0.5 + last.interest + last.trust), 0.9)
        gap = 60 + np.floor(rng.exponential(RETURN_GAP_MEAN_S, len(last))).astype(np.int64)
        enter = last.enter + last.dwell + gap
        back = (rng.random(len(last)) < p) & (enter < schedule.end[last.session] - 30)
        if not back.any():
            break
        last = _with_dwell(world, schedule, last.user[back], last.session[back], enter[back], rng)
        parts.append(last)
    return Visits(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in Visits.__dataclass_fields__)
    )


def _drop_overlaps(v: Visits) -> Visits:
    """Drop a visit that starts before an earlier visit of the same user to the same room ends."""
    if len(v) == 0:
        return v
    order = np.lexsort((v.enter, v.session, v.user))
    user, session = v.user[order], v.session[order]
    enter = v.enter[order] - v.enter.min()  # >= 0 and < 2**34
    leave = enter + v.dwell[order]
    group_start = np.ones(len(order), dtype=bool)
    group_start[1:] = (user[1:] != user[:-1]) | (session[1:] != session[:-1])
    # Offsetting by group makes one running maximum act as a per-group running maximum.
    shift = np.cumsum(group_start).astype(np.int64) << 34
    latest_leave = np.maximum.accumulate(shift + leave)
    ok = group_start.copy()
    ok[1:] |= shift[1:] + enter[1:] > latest_leave[:-1]
    keep = np.sort(order[ok])
    return Visits(*(getattr(v, f)[keep] for f in Visits.__dataclass_fields__))
