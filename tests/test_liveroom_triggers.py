"""Host triggers: planted drops, spikes and question bursts are found soon, with reasons;
a steady room gets no suggestion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.liveroom.evaluation import evaluate_days
from recsys.liveroom.events import from_frame
from recsys.liveroom.rooms import LiveRooms
from recsys.simulation import SimConfig, simulate


@pytest.fixture(scope="module")
def busy_world(tmp_path_factory):
    """A tiny world with few streamers, so rooms hold tens of viewers."""
    out = tmp_path_factory.mktemp("busy")
    simulate(SimConfig.from_preset("tiny", n_users=1500, n_streamers=6, n_days=3, seed=3), out)
    return out


def test_planted_incidents_are_found_with_reasons(busy_world):
    result = evaluate_days(busy_world, range(3))
    triggers = result["triggers"]
    assert triggers["incidents"] >= 15
    assert triggers["precision"] >= 0.8 and triggers["recall"] >= 0.8, triggers
    assert triggers["median_delay_s"] <= 150, triggers
    suggestions = result["suggestions"]
    assert set(suggestions["kind"]) == {"drop", "spike", "burst"}
    assert suggestions["reason"].str.len().min() > 10
    spikes = suggestions[suggestions["kind"] == "spike"]
    planted = result["incidents"][result["incidents"]["kind"] == "spike"]
    assert set(planted["product_id"].astype(int)) <= set(spikes["product"].astype(int))
    assert result["unjudged_minutes"] == 0
    assert result["questions"]["ari"] > 0.8


def steady_room(minutes: int, rng) -> pd.DataFrame:
    """30 viewers, each liking and commenting at a steady rate; one product on show."""
    rows = [(i, 1_000_000 + i, 7, u, "enter", None, None) for i, u in enumerate(range(30))]
    t = 1_000_000 + 60
    for k in range(minutes * 20):
        ts = t + k * 3
        rows.append((100 + k, ts, 7, int(rng.integers(30)), "like", None, None))
        if k % 4 == 0:
            rows.append((10**6 + k, ts, 7, int(rng.integers(30)), "click", 5, None))
    rows.append((10**7, 1_000_000 + 1, 7, 0, "present", 5, None))
    frame = pd.DataFrame(
        rows,
        columns=["event_id", "ts", "session_id", "user_id", "event_type", "product_id", "comment"],
    )
    return frame.sort_values(["ts", "event_id"]).reset_index(drop=True)


def test_a_steady_room_gets_no_suggestion_and_a_silenced_one_gets_a_lottery():
    rng = np.random.default_rng(0)
    frame = steady_room(40, rng)
    store = LiveRooms()
    for start in range(0, len(frame), 100):
        store.ingest(from_frame(frame.iloc[start : start + 100]).columns)
    assert not store.history
    silence = frame["ts"].max() + 240  # four quiet minutes, then one like closes them
    store.ingest(from_frame(frame.iloc[-1:].assign(event_id=1, ts=silence)).columns)
    kinds = [s.kind for s in store.history]
    assert kinds == ["drop"], [s.as_dict() for s in store.history]
    assert "lottery" in store.history[0].action
