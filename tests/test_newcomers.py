"""Newcomers: users and streamers who arrive during a world's days do nothing before their first
day, in the world recsys-simulate writes and in the market; a world without them is unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.tables import load_tables
from recsys.data.validation import validate_dir
from recsys.datasets import ensure_world, world_cache_dir
from recsys.market import Market, MarketConfig, RandomPolicy
from recsys.simulation import SimConfig
from recsys.simulation.runner import SCHEDULE, WORLD, _rng
from recsys.simulation.schedule import build_schedule
from recsys.simulation.world import build_world

SHARES = {"new_user_share": 0.3, "new_streamer_share": 0.3}


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    return ensure_world("tiny", 0, tmp_path_factory.mktemp("worlds"), SHARES)


def _first_day(config: SimConfig, ts: pd.Series) -> np.ndarray:
    return ((ts.to_numpy() - config.chunk_window(0)[0]) // 86_400).astype(np.int64)


def test_newcomers_do_nothing_before_their_first_day(world_dir):
    config = SimConfig.from_preset("tiny", seed=0, **SHARES)
    world = build_world(config, _rng(config, WORLD))
    joined, debut = world.arrivals.user_day, world.arrivals.streamer_day
    assert 0.2 < (joined > 0).mean() < 0.4 and 0.1 < (debut > 0).mean() < 0.5
    tables = load_tables(world_dir)
    users = tables.users.set_index("user_id")
    day_of_user = pd.Series(joined, index=world.users.pseudonym)
    events = tables.events
    first = events.groupby("user_id")["ts"].min()
    assert (_first_day(config, first) >= day_of_user[first.index].to_numpy()).all()
    late = day_of_user[day_of_user > 0].index
    assert events["user_id"].isin(late).any()  # they do come
    starts = config.chunk_window(0)[0] + 86_400 * day_of_user[late].to_numpy()
    assert (users.loc[late, "signup_ts"].to_numpy() == starts).all()
    sessions = tables.live_sessions
    day = _first_day(config, sessions["start_ts"])
    assert (day >= debut[sessions["streamer_id"].to_numpy()]).all()
    assert (sessions["session_id"].to_numpy() == np.arange(len(sessions))).all()
    assert validate_dir(world_dir, mode="strict").n_rejected == 0


def test_a_world_without_newcomers_is_the_preset_world(tmp_path):
    plain = SimConfig.from_preset("tiny", seed=0)
    world = build_world(plain, _rng(plain, WORLD))
    assert not world.arrivals.user_day.any() and not world.arrivals.streamer_day.any()
    assert world.on_day(0) is world
    schedule = build_schedule(plain, world, _rng(plain, SCHEDULE))
    assert schedule.day_offset[-1] == len(schedule)
    assert world_cache_dir("tiny", 0, tmp_path) == tmp_path / "tiny-0"
    assert world_cache_dir("tiny", 0, tmp_path, SHARES).name == (
        "tiny-0_new_streamer_share0.3_new_user_share0.3"
    )
    with pytest.raises(ValueError, match="new_user_share must lie in"):
        SimConfig.from_preset("tiny", new_user_share=1.0)


def test_the_market_hears_no_newcomer_before_their_first_day(world_dir, tmp_path):
    config = MarketConfig(preset="tiny", seed=0, **SHARES)
    market = Market(config, tmp_path / "market")
    market.run(RandomPolicy(seed=0))
    joined = pd.Series(market.world.arrivals.user_day, index=market.world.users.pseudonym)
    requests = pd.concat(
        pd.read_parquet(p).assign(day=int(p.stem.split("-")[1]))
        for p in sorted((tmp_path / "market" / "requests").glob("part-*.parquet"))
    )
    assert (requests["day"].to_numpy() >= joined[requests["user_id"]].to_numpy()).all()
    assert requests["user_id"].isin(joined[joined > 0].index).any()
    world_users = load_tables(world_dir).users["user_id"]
    assert set(market.frames["users"]["user_id"]) == set(world_users)
