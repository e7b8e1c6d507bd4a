"""Live schedule: when each streamer is live, and which product is presented when.

A streamer has regular weekly slots (distinct weekdays, usually one favourite start hour) and
sometimes goes live on an off day. At most one session per streamer per day, every session
starts between 08:00 and 23:30 local time and lasts 1-4 h, so sessions of one streamer never
overlap and each session lies inside the chunk (05:00-05:00) of the day it starts.

During a session the streamer presents products from their catalogue one after another
(contiguous segments of a few minutes, at least one minute each). A random share of segments
carries a coupon drop whose value is one of ``coupon_values`` not above half the price: the
coupon is assigned independently of who watches, so coupon claims are a randomised treatment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.simulation import catalog as cat
from recsys.simulation.config import SECONDS_PER_DAY, SimConfig
from recsys.simulation.world import World

SEGMENT_MIN_S = 60
SLOT_HOUR_CHANGE = 0.2  # chance a weekly slot starts at another hour than the favourite
POPULARITY_NOISE = 0.25  # session-to-session lognormal spread of a streamer's popularity


@dataclass(frozen=True)
class Schedule:
    streamer: np.ndarray  # (J,) streamer index of each session; session id = position
    start: np.ndarray  # (J,) int64, sorted
    end: np.ndarray  # (J,) int64
    popularity: np.ndarray  # (J,) drawing power of the session
    day_offset: np.ndarray  # (D + 1,) sessions of chunk d are day_offset[d]:day_offset[d + 1]
    seg_session: np.ndarray  # (G,) sorted; segments of one session are contiguous in time
    seg_product: np.ndarray  # (G,)
    seg_start: np.ndarray  # (G,) int64
    seg_end: np.ndarray  # (G,) int64, equals the next segment's start within a session
    seg_coupon: np.ndarray  # (G,) coupon value dropped during the segment, 0 = none

    def __len__(self) -> int:
        return len(self.streamer)


def build_schedule(config: SimConfig, world: World, rng: np.random.Generator) -> Schedule:
    streamer, start, end = _sessions(config, rng)
    order = np.lexsort((streamer, start))
    streamer, start, end = streamer[order], start[order], end[order]
    days = (start - config.chunk_window(0)[0]) // SECONDS_PER_DAY
    day_offset = np.searchsorted(days, np.arange(config.n_days + 1))
    noise = np.exp(POPULARITY_NOISE * rng.standard_normal(len(start)))
    popularity = world.streamers.kol[streamer] * noise
    segments = _segments(config, world, streamer, start, end, rng)
    schedule = Schedule(streamer, start, end, popularity, day_offset, *segments)
    debut = world.arrivals.streamer_day[streamer]
    return _only(schedule, days >= debut) if (debut > 0).any() else schedule


def _only(schedule: Schedule, keep: np.ndarray) -> Schedule:
    """The sessions where ``keep`` holds (newcomers' sessions before their first day go),
    renumbered in order, with their segments."""
    new_id = np.cumsum(keep) - 1
    seg = keep[schedule.seg_session]
    kept_before = np.r_[0, np.cumsum(keep)]
    s = schedule
    return Schedule(
        s.streamer[keep], s.start[keep], s.end[keep], s.popularity[keep],
        kept_before[s.day_offset], new_id[s.seg_session[seg]], s.seg_product[seg],
        s.seg_start[seg], s.seg_end[seg], s.seg_coupon[seg],
    )  # fmt: skip


def _slot_matrix(n: int, lo: int, hi: int, rng: np.random.Generator):
    """(n, 7) regular-slot mask, start hour, start minute and duration in seconds."""
    n_slots = rng.integers(lo, hi + 1, n)
    rank = np.argsort(np.argsort(rng.random((n, 7)), axis=1), axis=1)
    mask = rank < n_slots[:, None]
    favourite = _start_hours(rng, n)[:, None]
    hour = np.where(rng.random((n, 7)) < SLOT_HOUR_CHANGE, _start_hours(rng, (n, 7)), favourite)
    minute = 30 * rng.integers(0, 2, (n, 7))
    return mask, hour, minute, _durations(rng, (n, 7))


def _start_hours(rng: np.random.Generator, size) -> np.ndarray:
    p = cat.START_HOUR_P / cat.START_HOUR_P.sum()
    return cat.START_HOURS[rng.choice(len(p), size=size, p=p)]


def _durations(rng: np.random.Generator, size) -> np.ndarray:
    p = np.asarray(cat.DURATION_P) / np.sum(cat.DURATION_P)
    hours = np.asarray(cat.DURATIONS_H)[rng.choice(len(p), size=size, p=p)]
    return np.round(hours * 3600).astype(np.int64)


def _sessions(config: SimConfig, rng: np.random.Generator):
    """(streamer, start, end) of every session over the simulated days, unsorted."""
    n, n_days = config.n_streamers, config.n_days
    mask, hour, minute, duration = _slot_matrix(n, *config.regular_slots, rng)
    weekday = np.array([config.weekday(d) for d in range(n_days)])
    regular = mask[:, weekday].T  # (D, S)
    extra = ~regular & (rng.random((n_days, n)) < config.extra_session_rate)
    extra_hour = _start_hours(rng, (n_days, n))
    extra_minute = 30 * rng.integers(0, 2, (n_days, n))
    extra_duration = _durations(rng, (n_days, n))
    start_h = np.where(regular, hour[:, weekday].T, extra_hour)
    start_m = np.where(regular, minute[:, weekday].T, extra_minute)
    dur = np.where(regular, duration[:, weekday].T, extra_duration)
    day, streamer = np.nonzero(regular | extra)  # (n_sessions,) each
    midnight = config.start_ts + day * SECONDS_PER_DAY
    start = midnight + start_h[day, streamer] * 3600 + start_m[day, streamer] * 60
    return streamer.astype(np.int64), start.astype(np.int64), start + dur[day, streamer]


def _segments(config: SimConfig, world: World, streamer, start, end, rng: np.random.Generator):
    """Contiguous product segments of every session and their coupon drops."""
    if len(start) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty, np.zeros(0)
    dur = end - start
    n_seg = np.maximum(1, np.round(dur / (60.0 * config.segment_minutes))).astype(np.int64)
    n_seg = np.minimum(n_seg, dur // SEGMENT_MIN_S)
    session = np.repeat(np.arange(len(start)), n_seg)
    first = np.concatenate([[0], np.cumsum(n_seg)[:-1]])
    pos = np.arange(len(session)) - first[session]
    # Segment lengths: SEGMENT_MIN_S each plus a gamma share of the remaining time.
    g = rng.gamma(4.0, size=len(session))
    cum = np.cumsum(g)
    before = np.where(first > 0, cum[first - 1], 0.0)
    frac = (cum - before[session]) / (cum[first + n_seg - 1] - before)[session]
    spare = (dur - SEGMENT_MIN_S * n_seg)[session]
    seg_end = start[session] + SEGMENT_MIN_S * (pos + 1) + np.floor(frac * spare).astype(np.int64)
    seg_end[first + n_seg - 1] = end  # exact even where frac rounds just below 1
    seg_start = np.where(pos == 0, start[session], np.roll(seg_end, 1))
    slot = rng.integers(0, config.catalogue_size, len(session))
    product = world.streamers.catalogue[streamer[session], slot]
    coupon = _coupons(config, world.products.price[product], rng)
    return session, product, seg_start, seg_end, coupon


def _coupons(config: SimConfig, price: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    values = np.asarray(config.coupon_values, dtype=float)
    allowed = values[None, :] <= 0.5 * price[:, None]  # (G, V)
    pick = np.argmax(rng.random(allowed.shape) * allowed, axis=1)
    drop = (rng.random(len(price)) < config.coupon_rate) & allowed.any(axis=1)
    return np.where(drop, values[pick], 0.0)
