"""The streaming room aggregator equals a batch recompute, under lateness, duplicates and
shuffles; rooms expire; bad input is rejected with its row and field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.liveroom.aggregator import AggregatorConfig, RoomAggregator
from recsys.liveroom.batch import batch_snapshot
from recsys.liveroom.events import MAX_TEXT, from_frame, from_records
from recsys.simulation.live_room import live_room_day


@pytest.fixture(scope="module")
def day(tiny_world_dir):
    return live_room_day(tiny_world_dir, 0)


def stream_frame(day) -> pd.DataFrame:
    """The day's events plus a ``present`` row per showcase segment, in time order."""
    shows = day.showcase.rename(columns={"start_ts": "ts"}).assign(event_type="present")
    shows["event_id"] = np.arange(len(shows), dtype=np.int64) + (1 << 50)
    shows["user_id"] = 0
    frame = pd.concat(
        [
            day.events,
            shows[["event_id", "ts", "session_id", "user_id", "event_type", "product_id"]],
        ],
        ignore_index=True,
    )
    return frame.sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)


def disorder(frame: pd.DataFrame, rng, *, jitter_s: int, dup_share: float, late_share: float):
    """Arrival order with bounded disorder, duplicated rows and a few very late rows."""
    arrival = frame["ts"].to_numpy() + rng.integers(0, jitter_s + 1, len(frame))
    late = rng.random(len(frame)) < late_share
    arrival[late] += 600 + rng.integers(0, 600, late.sum())
    out = frame.iloc[np.argsort(arrival, kind="stable")]
    dups = out.sample(frac=dup_share, random_state=1)
    out = pd.concat([out, dups]).iloc[
        np.argsort(np.r_[np.arange(len(out)), rng.integers(0, len(out), len(dups))], kind="stable")
    ]
    return out.reset_index(drop=True)


def run_stream(frame: pd.DataFrame, config: AggregatorConfig, batch: int) -> RoomAggregator:
    agg, columns = RoomAggregator(config), from_frame(frame).columns
    for start in range(0, len(frame), batch):
        agg.ingest(columns.take(np.arange(start, min(start + batch, len(frame)))))
    return agg


def assert_same(streamed: dict, batch: dict) -> None:
    assert streamed["watermark"] == batch["watermark"]
    assert streamed["on_show"] == batch["on_show"]
    for k, expected in batch["windows"].items():
        got = streamed["windows"][k]
        for name, value in expected.items():
            if value is None:
                assert got[name] is None, (k, name)
            else:
                assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-9), (k, name)


@pytest.mark.parametrize("batch, cut", [(1, 0.4), (97, 0.6), (5000, 0.6)])
def test_stream_equals_batch_recompute_with_disorder_duplicates_and_late_events(day, batch, cut):
    rng = np.random.default_rng(batch)
    frame = disorder(stream_frame(day), rng, jitter_s=20, dup_share=0.05, late_share=0.01)
    # Cut the stream where rooms are still live, so windows hold events.
    frame = frame[frame["ts"] < frame["ts"].quantile(cut)].reset_index(drop=True)
    config = AggregatorConfig(lateness_s=30, expire_after_s=10**9)
    agg = run_stream(frame, config, batch)
    rooms = agg.live_rooms()
    assert len(rooms) >= 5
    for room in rooms:
        assert_same(agg.snapshot(room), batch_snapshot(frame, room, lateness_s=30))


def test_report_counts_duplicates_and_late_events_exactly(day):
    frame = stream_frame(day).iloc[:3000].reset_index(drop=True)
    late = frame.iloc[[100, 200]].assign(event_id=lambda f: f["event_id"] + (1 << 55))
    late["ts"] = late["ts"] - 3600
    stream = pd.concat([frame, frame.iloc[:50], late], ignore_index=True)
    report, accepted = RoomAggregator(AggregatorConfig(expire_after_s=10**9)).ingest(
        from_frame(stream).columns
    )
    assert report.duplicates == 50 and report.too_late == 2
    assert report.accepted == len(accepted) == 3000


def test_rooms_expire_after_the_live_ends_and_stragglers_are_counted(day):
    frame = stream_frame(day)
    agg = run_stream(frame, AggregatorConfig(expire_after_s=1800), 2000)
    ended_early = day.sessions[day.sessions["end_ts"] < frame["ts"].max() - 3600]
    assert len(ended_early) and not set(ended_early["session_id"]) & set(agg.live_rooms())
    straggler = frame[frame["session_id"] == ended_early["session_id"].iloc[0]].iloc[:3]
    report, _ = agg.ingest(from_frame(straggler.assign(event_id=straggler["event_id"] + 7)).columns)
    assert report.expired == 3 and report.accepted == 0
    # Memory per room stays bounded by the ring: no room holds ids older than it.
    for state in agg.rooms.values():
        assert len(agg.table.ids[state.row]) <= agg.config.slots


def test_malformed_records_are_rejected_by_row_and_field():
    good = {"event_id": 1, "ts": 100, "session_id": 5, "user_id": 9, "event_type": "like"}
    records = [
        good,
        {**good, "event_type": "teleport"},
        {**good, "ts": "yesterday"},
        {**good, "event_type": "click"},
        {**good, "event_type": "comment", "comment": "x" * 20_000},
        {**good, "event_type": "comment", "comment": "能穿吗\x00\x1b[31m"},
        {**good, "event_type": "purchase", "product_id": 3, "amount": float("nan")},
        "not an object",
    ]
    parsed = from_records(records)
    reasons = {r.row: (r.field, r.reason) for r in parsed.rejects}
    assert sorted(reasons) == [1, 2, 3, 4, 6, 7]
    assert reasons[1][0] == "event_type" and reasons[2][0] == "ts"
    assert reasons[3][0] == "product_id" and str(MAX_TEXT) in reasons[4][1]
    assert len(parsed.columns) == 2 and parsed.columns.sanitised == 1
    assert parsed.columns.text[1] == "能穿吗[31m"
