"""Ingestion's memory between chunks: event-id ranges and each session's latest time, whichever
lookup path the ids take (a few ranges or many; dense or sparse session ids)."""

import numpy as np
import pandas as pd
import pytest

from recsys.data.ingest.state import FEW_RANGES, EventState, IdRanges


@pytest.mark.parametrize("n_ranges", [1, FEW_RANGES, FEW_RANGES + 5])
def test_id_ranges_contain_exactly_the_added_ids(n_ranges):
    rng = np.random.default_rng(n_ranges)
    starts = np.sort(rng.choice(10_000, n_ranges, replace=False)) * 100
    added = np.concatenate([np.arange(s, s + rng.integers(1, 50)) for s in starts])
    ranges = IdRanges.empty()
    ranges.add(rng.permutation(added))
    assert len(ranges.starts) == n_ranges
    probe = rng.integers(-10, 1_000_100, 20_000)
    assert np.array_equal(ranges.contains(probe), np.isin(probe, added))


@pytest.mark.parametrize("spread", [1, 10**9])
def test_latest_time_per_session_matches_a_groupby(spread):
    rng = np.random.default_rng(spread)
    sessions = rng.integers(0, 300, 5_000) * spread
    ts = rng.integers(0, 10**6, 5_000)
    state = EventState.empty()
    state.update(pd.DataFrame({"event_id": np.arange(5_000), "session_id": sessions, "ts": ts}))
    probe = np.r_[rng.integers(0, 400, 1_000) * spread, -5, 10**12]
    latest, known = state._latest(probe)
    truth = pd.Series(ts).groupby(sessions).max()
    assert np.array_equal(known, np.isin(probe, truth.index))
    assert np.array_equal(latest[known], truth.reindex(probe[known]).to_numpy())
