"""The coupon serving benchmark's parts: /coupon requests in the mix, schedules with gaps,
kept answers, and the paired-block comparison."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from harness.http_client import HttpRequest
from harness.loadgen import LoadConfig, run_open_loop
from harness.paired_blocks import block_order, paired_difference
from harness.request_mix import LiveWorld, MixConfig, RequestMix
from serving_coupons import parse_server_times, server_delta
from serving_coupons_report import verdict

from recsys.serving.metrics import Metrics
from recsys.serving.schemas import EventBatch
from tests.test_serving_benchmark import _serve


def load(requests, config, **options):
    """The load generator against a fresh in-process server that answers 200 at once."""

    async def main():
        server = await asyncio.start_server(
            lambda r, w: _serve(r, w, lambda target: (200, 0.0)), "127.0.0.1", 0
        )
        async with server:
            port = server.sockets[0].getsockname()[1]
            return await run_open_loop("127.0.0.1", port, requests, config, **options)

    return asyncio.run(main())


def _mix(tables, **settings) -> tuple[list[HttpRequest], int]:
    last = tables.live_sessions.loc[tables.live_sessions["start_ts"].idxmax()]
    now = (int(last["start_ts"]) + int(last["end_ts"])) // 2
    world = LiveWorld.at(tables.users, tables.live_sessions, tables.showcase, now)
    return RequestMix(world, MixConfig(**settings)).requests(600, rps=50, now=now), now


def test_coupon_requests_ask_about_viewers_who_clicked_before(tiny_world):
    settings = {"events_share": 0.3, "coupon_share": 0.2, "event_lag_s": 600, "seed": 5}
    requests, now = _mix(tiny_world, **settings)
    assert [r.target for r in requests] == [r.target for r in _mix(tiny_world, **settings)[0]]
    labels = [r.label for r in requests]
    assert 0.12 <= labels.count("coupon") / len(labels) <= 0.28
    assert 0.22 <= labels.count("events") / len(labels) <= 0.38
    clicked: set[int] = set()
    asked_about_clickers = 0
    for r in requests:
        if r.label == "events":
            batch = EventBatch.model_validate_json(r.body).events
            assert all(now - 600 <= e.ts <= now + 12 for e in batch)
            clicked |= {e.user_id for e in batch if e.event_type == "click"}
        elif r.label == "coupon":
            assert r.method == "GET" and r.target.startswith("/coupon?user=")
            user = int(r.target.split("user=")[1])
            asked_about_clickers += user in clicked
            assert user in clicked or not clicked  # a random user only before any click
    assert asked_about_clickers >= labels.count("coupon") - 5
    lags = [now - EventBatch.model_validate_json(r.body).events[0].ts
            for r in requests if r.label == "events"]  # fmt: skip
    assert max(lags) > 300  # some clicks are old enough to count as hesitation


def test_mix_without_coupon_share_sends_no_coupon_requests(tiny_world):
    requests, now = _mix(tiny_world, events_share=0.3, seed=5)
    assert all(r.label != "coupon" for r in requests)
    for r in requests:
        if r.label == "events":
            assert now <= EventBatch.model_validate_json(r.body).events[0].ts <= now + 12


@pytest.mark.parametrize(
    "settings",
    [{"events_share": 0.7, "coupon_share": 0.4}, {"coupon_share": -0.1}, {"event_lag_s": -1},
     {"hesitant_pool": 0}],
)  # fmt: skip
def test_mix_config_refuses_impossible_shares(settings):
    with pytest.raises(ValueError, match="MixConfig"):
        MixConfig(**settings)


def test_a_schedule_with_gaps_keeps_the_other_requests_times_and_bodies_are_kept():
    requests = [HttpRequest("GET", f"/{i}", label="keep" if i == 2 else "get") for i in range(4)]
    schedule = [0.0, 0.05, 0.3, 0.35]
    result = load(requests, LoadConfig(rps=20), schedule=schedule, keep_bodies_of=("keep",))
    assert result.summary()["ok"] == 4
    assert np.allclose(result.scheduled, schedule) and (result.sent - result.scheduled < 0.05).all()
    assert json.loads(result.bodies[2]) == {"ok": True} and list(result.bodies) == [2]
    with pytest.raises(ValueError, match="schedule"):
        load(requests, LoadConfig(rps=20), schedule=[0.0, 0.2, 0.1, 0.3])


def test_blocks_alternate_and_the_paired_difference_finds_a_shift():
    assert block_order(3) == [(0, "A"), (0, "B"), (1, "B"), (1, "A"), (2, "A"), (2, "B")]
    rng = np.random.default_rng(0)
    drift = np.linspace(0, 20, 10)  # both configs of a pair see the same background load
    a = [rng.exponential(5, 3000) + d for d in drift]
    b = [rng.exponential(5, 3000) + d + 3.0 for d in drift]
    shifted = paired_difference(a, b, n_boot=300)
    assert shifted.low < 3.0 < shifted.high and shifted.diff == pytest.approx(3.0, abs=1.5)
    same = paired_difference(a, [x + rng.normal(0, 0.01, len(x)) for x in a], n_boot=300)
    assert same.low <= 0.0 <= same.high and sum(d > 0 for d in same.per_pair) <= 8
    with pytest.raises(ValueError, match="as many"):
        paired_difference(a, b[:-1])


def test_server_times_are_read_from_the_services_metrics():
    metrics = Metrics()
    for seconds in (0.002, 0.004):
        metrics.request("GET", "/recommend", 200, seconds)
    metrics.request("GET", "/coupon", 200, 0.001)
    times = parse_server_times(metrics.render())
    assert times["/recommend"] == [2.0, pytest.approx(0.006)]
    assert times["/coupon"] == [1.0, pytest.approx(0.001)]
    later = {**times, "/recommend": [5.0, 0.012]}
    assert server_delta(times, later) == {"/recommend": {"answers": 3, "seconds": 0.006}}


@pytest.mark.parametrize(
    ("interval", "errors", "outcome"),
    [((-1.0, 4.0), 0, ": MET"), ((6.0, 9.0), 0, "NOT MET"), ((-1.0, 9.0), 0, "NOT SHOWN"),
     ((-1.0, 4.0), 1, ": MET"), ((-1.0, 4.0), 3, "NOT SHOWN")],
)  # fmt: skip
def test_verdict_needs_the_whole_interval_within_the_target_and_at_most_01_percent_refused(
    interval, errors, outcome
):
    diff = {"diff_ms": sum(interval) / 2, "interval_ms": list(interval)}
    text = verdict(diff, {"A": 0, "B": errors}, {"A": 900, "B": 1000}, 5.0)
    assert outcome in text and f"B {errors} of 1000" in text
