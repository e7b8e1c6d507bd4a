"""Impression logs from the synthetic world, their true outcomes, and point-in-time look-ups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import recsys.simulation.impressions as impressions_module
from recsys.data.timeline import KeyedIntervals, KeyedTimeline, pair_codes
from recsys.simulation.impressions import (
    IMPRESSION_COLUMNS,
    LoggingPolicy,
    choose_lists,
    draw_outcomes,
    impression_log,
    live_candidates,
    request_points,
    validate_impressions,
)
from recsys.simulation.response import (
    ResponseConfig,
    WorldTruth,
    card_factors,
    compare_outcomes,
    ndcg_per_request,
    outcome_summary,
    position_bias,
    simulate_outcomes,
    true_gains,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from recsys.data.tables import load_tables
    from recsys.datasets import ensure_world

    folder = ensure_world("tiny", 0, tmp_path_factory.mktemp("worlds"))
    return load_tables(folder), WorldTruth.from_folder(folder)


@pytest.fixture(scope="module")
def log(world):
    tables, truth = world
    return impression_log(truth, tables, n_requests=None, seed=3)


# ---------------------------------------------------------------- point-in-time look-ups


def test_keyed_timeline_sums_by_hand():
    key = np.array([5, 5, 5, 9, -1])
    ts = np.array([10, 20, 20, 15, 12])
    line = KeyedTimeline(key, ts, np.array([1.0, 2.0, 4.0, 8.0, 16.0]))
    # [lo, hi): the records at exactly hi are left out; key -1 is nobody's, key 7 unknown.
    got = line.sum_between(np.array([5, 5, 5, 9, 7, -1]), np.array([0, 11, 10, 0, 0, 0]),
                           np.array([20, 21, 11, 16, 99, 99]))  # fmt: skip
    np.testing.assert_array_equal(got, [1.0, 6.0, 1.0, 8.0, 0.0, 0.0])
    np.testing.assert_array_equal(line.sum_before(np.array([5, 5]), np.array([10, 21])), [0, 7])


def test_keyed_intervals_are_closed_and_per_key():
    slots = KeyedIntervals(
        np.array([1, 1, 2]), np.array([100, 200, 100]), np.array([199, 300, 150])
    )
    got = slots.covering(
        np.array([1, 1, 1, 1, 2, 2, 3, 1]), np.array([100, 199, 200, 301, 150, 151, 120, 50])
    )
    np.testing.assert_array_equal(got, [0, 0, 1, -1, 2, -1, -1, -1])
    assert pair_codes(np.array([2, -1]), np.array([3, 1]), 10).tolist() == [23, -1]


# ---------------------------------------------------------------- requests and candidates


def test_request_points_sample_enters_in_window(world):
    tables, _ = world
    enter = tables.events.loc[tables.events["event_type"] == "enter"]
    lo = int(enter["ts"].quantile(0.5))
    req = request_points(tables.events, n_requests=50, seed=1, start_ts=lo)
    assert req["request_id"].tolist() == list(range(50))
    assert req["ts"].is_monotonic_increasing and (req["ts"] > lo).all()
    pd.testing.assert_frame_equal(
        req, request_points(tables.events, n_requests=50, seed=1, start_ts=lo)
    )
    with pytest.raises(ValueError, match="requests asked"):
        request_points(tables.events, n_requests=10**7, seed=1)


def test_live_candidates_keep_one_shelf_preferring_the_one_presenting():
    sessions = pd.DataFrame({"session_id": [1, 2, 3], "streamer_id": [10, 20, 30],
                             "start_ts": [0, 0, 500], "end_ts": [1000, 1000, 900]})  # fmt: skip
    showcase = pd.DataFrame({"session_id": [1, 1, 2, 2, 3], "product_id": [5, 6, 5, 7, 8],
                             "start_ts": [0, 50, 0, 100, 500],
                             "end_ts": [50, 1000, 100, 1000, 900]})  # fmt: skip
    requests = pd.DataFrame({"request_id": [0, 1], "user_id": [1, 1], "ts": [120, 20]})
    c = live_candidates(sessions, showcase, requests)
    got = {
        (r, p): (s, bool(o))
        for r, p, s, o in c[["request_id", "product_id", "session_id", "on_show"]].itertuples(
            index=False
        )
    }
    # At 120 product 5 waits on both shelves: the earlier session's row stays. At 20 session 2
    # presents 5... and so does session 1; the earlier wins again. Session 3 is off air.
    assert got == {(0, 5): (1, False), (0, 6): (1, True), (0, 7): (2, True),
                   (1, 5): (1, True), (1, 6): (1, False), (1, 7): (2, False)}  # fmt: skip
    showcase.loc[0, "end_ts"] = 10  # now only session 2 presents product 5 at time 20
    c = live_candidates(sessions, showcase, requests)
    row = c.loc[(c["request_id"] == 1) & (c["product_id"] == 5)]
    assert row["session_id"].tolist() == [2] and row["on_show"].tolist() == [True]


def test_choose_lists_propensities_by_hand():
    requests = pd.DataFrame({"request_id": [7], "user_id": [1], "ts": [1000]})
    candidates = pd.DataFrame({"request_id": [7, 7, 7], "product_id": [1, 2, 3],
                               "streamer_id": [0, 0, 0], "session_id": [0, 0, 0]})  # fmt: skip
    # The click at time 10 falls outside the 500 s popularity window.
    clicks = pd.DataFrame({"event_type": "click", "product_id": [1, 1, 1, 3, 3],
                           "ts": [900, 950, 999, 990, 10]})  # fmt: skip
    policy = LoggingPolicy(k=2, popularity_power=1.0, popularity_window_s=500)
    shown = choose_lists(candidates, requests, clicks, policy, seed=0)
    weight = {1: 4.0, 2: 1.0, 3: 2.0}  # 1 + clicks in [500, 1000)
    first, second = shown["product_id"].tolist()
    assert shown["position"].tolist() == [0, 1] and shown["n_candidates"].tolist() == [3, 3]
    np.testing.assert_allclose(
        shown["propensity"], [weight[first] / 7.0, weight[second] / (7.0 - weight[first])]
    )
    uniform = choose_lists(candidates, requests, clicks, LoggingPolicy(k=5), seed=0)
    np.testing.assert_allclose(uniform["propensity"], [1 / 3, 1 / 2, 1.0])


# ---------------------------------------------------------------- the log


def test_log_is_seeded_and_well_formed(world, log):
    tables, truth = world
    imp = log.impressions
    assert list(imp.columns) == list(IMPRESSION_COLUMNS) and len(imp) > 5000
    again = impression_log(truth, tables, n_requests=None, seed=3)
    pd.testing.assert_frame_equal(imp, again.impressions)
    other = impression_log(truth, tables, n_requests=None, seed=4).impressions
    assert not imp[["product_id", "click"]].equals(other[["product_id", "click"]])
    validate_impressions(imp, log.candidates)
    per_request = imp.groupby("request_id")
    n = log.candidates.groupby("request_id").size().reindex(per_request.size().index)
    np.testing.assert_array_equal(per_request.size(), np.minimum(n, 10))
    np.testing.assert_array_equal(per_request["n_candidates"].first(), n)
    # Uniform policy: the pick at position j had n - j equally likely choices.
    np.testing.assert_allclose(imp["propensity"], 1.0 / (imp["n_candidates"] - imp["position"]))


def test_only_live_items_are_shown(world, log):
    tables, truth = world
    imp = log.impressions.merge(tables.live_sessions, on=["session_id", "streamer_id"])
    assert len(imp) == len(log.impressions)
    assert ((imp["start_ts"] <= imp["ts"]) & (imp["ts"] <= imp["end_ts"])).all()
    shelf = tables.showcase[["session_id", "product_id"]].drop_duplicates()
    on_shelf = log.impressions.merge(shelf, on=["session_id", "product_id"])
    assert len(on_shelf) == len(log.impressions)
    assert simulate_outcomes(truth, log.impressions)["live"].all()


def test_validation_names_the_bad_row_and_field(log):
    imp = log.impressions.copy()
    imp.loc[3, "position"] = 99
    with pytest.raises(ValueError, match="'position'"):
        validate_impressions(imp)
    imp = log.impressions.copy()
    imp.loc[imp.index[imp["click"] == 0][0], "conversion"] = 1
    with pytest.raises(ValueError, match="'conversion' without a click"):
        validate_impressions(imp)
    foreign = log.impressions.copy()
    foreign.loc[0, "product_id"] = -5
    with pytest.raises(ValueError, match="not among its request's live candidates"):
        validate_impressions(foreign, log.candidates)


def test_clicks_rise_with_planted_interest_and_trust(world, log):
    _, truth = world
    imp = log.impressions
    f = card_factors(truth, imp)
    click = imp["click"].to_numpy()
    high, low = click[f["interest"] >= 0.3], click[f["interest"] < 0.05]
    assert high.mean() > 2.5 * low.mean() and len(high) > 300
    trusted, untrusted = click[f["trust"] > 0], click[f["trust"] == 0]
    assert trusted.mean() > 1.3 * untrusted.mean() and len(trusted) > 100
    conv = imp["conversion"].to_numpy()[click == 1]
    assert (
        conv[f["interest"][click == 1] >= 0.3].mean()
        > conv[f["interest"][click == 1] < 0.05].mean()
    )
    # The position bias shows in the log: the top slot gets clicked more than the last.
    by_position = imp.groupby("position")["click"].mean()
    assert by_position[0] > 1.5 * by_position[9]


def test_expected_outcomes_match_monte_carlo(world, log):
    _, truth = world
    shown = log.impressions.loc[log.impressions["request_id"] < 40].drop(
        columns=["click", "conversion"]
    )
    reps = 300
    many = pd.concat([shown.assign(request_id=shown["request_id"] * reps + r) for r in range(reps)],
                     ignore_index=True)  # fmt: skip
    drawn = draw_outcomes(truth, many, seed=11)
    expected = simulate_outcomes(truth, shown)
    p_click = expected["p_click"].to_numpy()
    n = len(many)
    ctr, se = drawn["click"].mean(), np.sqrt(np.sum(p_click * (1 - p_click)) * reps) / n
    assert abs(ctr - p_click.mean()) < 4 * se
    ctcvr = expected["p_ctcvr"].to_numpy()
    se = np.sqrt(np.sum(ctcvr * (1 - ctcvr)) * reps) / n
    assert abs(drawn["conversion"].mean() - ctcvr.mean()) < 4 * se
    summary = outcome_summary(expected)
    np.testing.assert_allclose(summary["ctr"]["value"], p_click.mean())
    lo, hi = summary["ctr"]["low"], summary["ctr"]["high"]
    assert lo < drawn["click"].mean() < hi


def test_outcome_summary_and_comparison_by_hand():
    a = pd.DataFrame({"request_id": [0, 0, 1, 1], "p_click": [0.2, 0.1, 0.4, 0.3],
                      "p_ctcvr": [0.02, 0.0, 0.04, 0.06]})  # fmt: skip
    s = outcome_summary(a)
    assert s["impressions"] == 4 and s["requests"] == 2
    np.testing.assert_allclose(s["ctr"]["value"], 1.0 / 4)
    np.testing.assert_allclose(s["cvr"]["value"], 0.12 / 1.0)
    # Ratio CI: per request clicks (0.3, 0.7), impressions (2, 2): residuals (-0.2, 0.2) / 4.
    np.testing.assert_allclose(s["ctr"]["se"], np.sqrt(2 * (0.05**2 + 0.05**2)))
    same = compare_outcomes(a, a)
    assert same["ctr"]["value"] == 0 and same["ctr"]["se"] == 0
    better = a.assign(p_click=a["p_click"] + 0.1)
    np.testing.assert_allclose(compare_outcomes(better, a)["ctr"]["value"], 0.1)


def test_position_bias_and_true_ndcg(world, log):
    _, truth = world
    np.testing.assert_allclose(position_bias([0, 1, 2]), [1.0, 1 / np.log2(3), 0.5])
    c = log.candidates.merge(log.requests[["request_id", "user_id", "ts"]], on="request_id")
    c = c.loc[c["request_id"] < 30].copy()
    c["gain"] = true_gains(truth, c)
    best = c.sort_values(["request_id", "gain"], ascending=[True, False])
    best = best.assign(position=best.groupby("request_id").cumcount())
    np.testing.assert_allclose(ndcg_per_request(best, c, 10), 1.0)
    worst = best.assign(position=best.groupby("request_id").cumcount(ascending=False))
    assert ndcg_per_request(worst, c, 10).mean() < 0.5


def test_response_config_moves_probabilities(world, log):
    _, truth = world
    shown = log.impressions.head(200)
    base = simulate_outcomes(truth, shown)["p_click"]
    longer = simulate_outcomes(truth, shown, ResponseConfig(exposure_minutes=2.0))["p_click"]
    assert (longer >= base).all() and (longer > base).any()
    with pytest.raises(ValueError, match="shelf_trust_share"):
        ResponseConfig(shelf_trust_share=2.0)


def test_requests_served_in_chunks_give_the_same_candidates_and_a_valid_log(
    world, log, monkeypatch
):
    tables, truth = world
    monkeypatch.setattr(impressions_module, "CHUNK_REQUESTS", 97)
    chunked = impression_log(truth, tables, n_requests=None, seed=3)
    pd.testing.assert_frame_equal(chunked.requests, log.requests)
    pd.testing.assert_frame_equal(chunked.candidates, log.candidates)
    assert chunked.n_candidates == log.n_candidates == len(log.candidates)
    validate_impressions(chunked.impressions, chunked.candidates)
    assert chunked.impressions["request_id"].nunique() == log.impressions["request_id"].nunique()
    # the first chunk's lists and clicks are drawn as an unchunked log's; later chunks draw
    # from their own streams
    cols = [c for c in IMPRESSION_COLUMNS if c != "conversion"]
    first = log.impressions["request_id"] < 97
    pd.testing.assert_frame_equal(
        chunked.impressions.loc[chunked.impressions["request_id"] < 97, cols].reset_index(
            drop=True
        ),
        log.impressions.loc[first, cols].reset_index(drop=True),
    )
    lean = impression_log(truth, tables, n_requests=None, seed=3, keep_candidates=False)
    assert lean.candidates.empty and lean.n_candidates == log.n_candidates
    pd.testing.assert_frame_equal(lean.impressions, chunked.impressions)
