"""When viewers open the app: the requests a recommending policy answers.

Each viewer opens the app ``Poisson(open_rate * activity * weekend)`` times a day, at an hour
drawn from their own hour profile and a uniform second within it (the same activity and hour
profile that drive their room visits). An opening while no room is on air is no request: there
is nothing live to recommend, and a viewer who has not signed up yet opens nothing. Arrivals
depend only on the day's seed, never on the policy.
"""

from __future__ import annotations

import numpy as np

from recsys.data.availability import live_sets
from recsys.simulation.config import CHUNK_START_HOUR
from recsys.simulation.schedule import Schedule
from recsys.simulation.world import World


def arrivals(
    world: World, schedule: Schedule, day: int, open_rate: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(user index, ts) of the day's requests, in time order (ties by user)."""
    config = world.config
    boost = config.weekend_boost if config.weekday(day) >= 5 else 1.0
    n = rng.poisson(open_rate * world.on_day(day).users.activity * boost)
    user = np.repeat(np.arange(len(n), dtype=np.int64), n)
    # Day chunks start at CHUNK_START_HOUR local time: slot j is local hour (start + j) % 24.
    hours = world.users.hours[user][:, (CHUNK_START_HOUR + np.arange(24)) % 24]
    cdf = np.cumsum(hours, axis=1)
    slot = (cdf < rng.random(len(user))[:, None] * cdf[:, -1:]).sum(axis=1)
    start = config.chunk_window(day)[0]
    ts = start + 3600 * slot + rng.integers(0, 3600, len(user))
    on_air = np.diff(live_sets(np.zeros(len(schedule), dtype=np.int64), schedule.start,
                               schedule.end, ts)[0]) > 0  # fmt: skip
    user, ts = user[on_air], ts[on_air]
    order = np.lexsort((user, ts))
    return user[order], ts[order]
