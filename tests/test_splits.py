"""Leave-one-out, temporal and live time splits; live candidate sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.availability import is_available, live_sets, rows_contain
from recsys.data.live import (
    product_features,
    product_interactions,
    room_features,
    room_interactions,
)
from recsys.data.loaders import encode_interactions
from recsys.data.schema import TABLES, pandas_dtype
from recsys.data.splits import (
    leave_one_out,
    live_time_split,
    temporal_split,
    temporal_split_by_fraction,
    time_cutoffs,
)
from recsys.data.tables import LiveCommerceTables
from recsys.data.vocab import Vocab


def interactions(rows):
    user, item, ts = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    return encode_interactions(user, item, ts, name="toy")


def raw_rows(seqs, inter) -> dict[int, list[int]]:
    """{raw user: raw items} for non-empty rows."""
    users = np.flatnonzero(seqs.lengths)
    return {
        int(inter.user_vocab.decode([u])[0]): inter.item_vocab.decode(seqs.row(u)).tolist()
        for u in users
    }


def raw_targets(targets, inter) -> dict[int, int]:
    return dict(
        zip(
            inter.user_vocab.decode(targets.user).tolist(),
            inter.item_vocab.decode(targets.item).tolist(),
            strict=True,
        )
    )


# --- leave one out -----------------------------------------------------------------------

LOO_ROWS = [
    (1, 10, 1), (1, 11, 2), (1, 12, 3), (1, 13, 4),
    (2, 10, 5), (2, 14, 6),
    (3, 12, 9), (3, 11, 7), (3, 14, 8),
]  # fmt: skip


def test_leave_one_out_exact():
    inter = interactions(LOO_ROWS)
    split = leave_one_out(inter)
    assert raw_rows(split.train, inter) == {1: [10, 11], 2: [10, 14], 3: [11]}
    assert raw_targets(split.valid, inter) == {1: 12, 3: 14}
    assert raw_targets(split.test, inter) == {1: 13, 3: 12}
    assert split.test.ts.tolist() == [4, 9] and split.valid.ts.tolist() == [3, 8]
    assert raw_rows(split.test_history, inter) == {1: [10, 11, 12], 2: [10, 14], 3: [11, 14]}
    assert split.meta["n_evaluated_users"] == 2 and split.meta["n_train_only_users"] == 1
    assert split.meta["protocol"] == "leave_one_out" and split.name == "toy-loo"
    assert split.meta["test_targets_in_history"] == 0


def test_leave_one_out_min_len():
    inter = interactions(LOO_ROWS)
    split = leave_one_out(inter, min_len=2)
    assert raw_targets(split.test, inter) == {1: 13, 2: 14, 3: 12}
    assert raw_rows(split.train, inter) == {1: [10, 11], 3: [11]}  # user 2's train row is empty
    assert leave_one_out(inter, min_len=4).meta["n_evaluated_users"] == 1
    with pytest.raises(ValueError, match="min_len"):
        leave_one_out(inter, min_len=1)


def test_leave_one_out_ties_keep_input_order():
    inter = interactions([(1, 5, 0), (1, 6, 0), (1, 7, 0), (1, 8, 0)])
    split = leave_one_out(inter)
    assert raw_targets(split.valid, inter) == {1: 7} and raw_targets(split.test, inter) == {1: 8}


def test_leave_one_out_no_leakage_on_unique_items():
    rng = np.random.default_rng(0)
    rows = []
    for u in range(200):
        items = rng.choice(500, size=rng.integers(1, 12), replace=False)
        rows += [(u, int(i), t) for t, i in enumerate(items)]
    inter = interactions(rows)
    split = leave_one_out(inter)
    test_hist, train = split.test_history, split.train
    for k, u in enumerate(split.test.user):
        assert split.test.item[k] not in test_hist.row(u)
        assert split.valid.item[k] not in train.row(u)
        expected = np.append(train.row(u), split.valid.item[k])
        np.testing.assert_array_equal(test_hist.row(u), expected)
        assert test_hist.ts[test_hist.indptr[u + 1] - 1] < split.test.ts[k]
    assert len(train.items) + 2 * len(split.test) == len(inter)
    assert split.meta["valid_targets_in_history"] == split.meta["test_targets_in_history"] == 0


def test_leave_one_out_counts_repeat_targets():
    inter = interactions([(1, 5, 0), (1, 6, 1), (1, 5, 2), (1, 5, 3)])
    meta = leave_one_out(inter).meta
    assert meta["valid_targets_in_history"] == 1 and meta["test_targets_in_history"] == 1


# --- temporal --------------------------------------------------------------------------------

TEMPORAL_ROWS = [
    (1, 1, 1), (1, 2, 5), (1, 3, 10), (1, 1, 12), (1, 4, 15), (1, 5, 20), (1, 6, 25),
    (2, 2, 12), (2, 1, 22),
    (3, 1, 3), (3, 1, 21), (3, 3, 22),
]  # fmt: skip


def test_temporal_split_boundaries_and_first_new_item():
    inter = interactions(TEMPORAL_ROWS)
    split = temporal_split(inter, valid_ts=10, test_ts=20)
    assert raw_rows(split.train, inter) == {1: [1, 2], 3: [1]}
    assert raw_targets(split.valid, inter) == {1: 3, 2: 2}  # ts 10 belongs to the window
    assert raw_rows(split.test_history, inter) == {1: [1, 2, 3, 1, 4], 2: [2], 3: [1]}
    assert raw_targets(split.test, inter) == {1: 5, 2: 1, 3: 3}  # user 3's repeat of 1 skipped
    assert split.test.ts.tolist() == [20, 22, 22]
    assert split.meta["valid_cold_users"] == 1 and split.meta["test_cold_users"] == 0
    assert split.meta["n_evaluated_users"] == 3


def test_temporal_targets_never_in_history_nor_future_history():
    inter = interactions(TEMPORAL_ROWS)
    split = temporal_split(inter, valid_ts=10, test_ts=20)
    for targets, hist in ((split.valid, split.train), (split.test, split.test_history)):
        for u, i, t in zip(targets.user, targets.item, targets.ts, strict=True):
            assert i not in hist.row(u)
            assert np.all(hist.ts[hist.indptr[u] : hist.indptr[u + 1]] < t)


def test_time_cutoffs_and_fraction_split():
    ts = np.arange(100)
    assert time_cutoffs(ts, 0.1, 0.1) == (80, 90)
    assert time_cutoffs(ts[::-1], 0.2, 0.3) == (50, 70)
    with pytest.raises(ValueError):
        time_cutoffs(ts, 0.6, 0.5)
    split = temporal_split_by_fraction(interactions(TEMPORAL_ROWS), 0.25, 0.25)
    assert (split.meta["valid_ts"], split.meta["test_ts"]) == (15, 22)  # sorted ts [6], [9]


# --- live candidate sets --------------------------------------------------------------------


def test_live_sets_closed_intervals_and_dedup():
    # item 7 has two overlapping intervals; item 8 is live only at second 5
    item, start, end = np.array([7, 7, 8, 9]), np.array([0, 3, 5, 10]), np.array([4, 6, 5, 20])
    indptr, items = live_sets(item, start, end, np.array([-1, 0, 4, 5, 6, 7, 20, 21, 5]))
    rows = [items[indptr[q] : indptr[q + 1]].tolist() for q in range(len(indptr) - 1)]
    assert rows == [[], [7], [7], [7, 8], [7], [], [9], [], [7, 8]]
    assert rows_contain(indptr, items, np.array([7, 7, 7, 8, 9, 7, 9, 9, 8])).tolist() == [
        False, True, True, True, False, False, True, False, True,
    ]  # fmt: skip


def test_live_sets_empty_inputs():
    indptr, items = live_sets(np.zeros(0), np.zeros(0), np.zeros(0), np.array([1, 2]))
    assert indptr.tolist() == [0, 0, 0] and len(items) == 0
    indptr, items = live_sets(np.array([1]), np.array([0]), np.array([1]), np.zeros(0))
    assert indptr.tolist() == [0]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 60), st.integers(0, 25)), max_size=25),
    st.lists(st.integers(-5, 100), max_size=40),
)
def test_live_sets_match_brute_force(intervals, queries):
    item = np.array([i for i, _, _ in intervals], dtype=np.int64)
    start = np.array([s for _, s, _ in intervals], dtype=np.int64)
    end = start + np.array([d for _, _, d in intervals], dtype=np.int64)
    q = np.array(queries, dtype=np.int64)
    indptr, items = live_sets(item, start, end, q)
    probe = np.arange(len(q)) % 6
    available = is_available(item, start, end, probe, q)
    for k, t in enumerate(q):
        expected = sorted({int(i) for i, s, e in zip(item, start, end, strict=True) if s <= t <= e})
        assert items[indptr[k] : indptr[k + 1]].tolist() == expected
        assert available[k] == (probe[k] in expected)


# --- live tables ----------------------------------------------------------------------------


def frame(name, rows):
    schema = TABLES[name]
    df = pd.DataFrame(rows, columns=schema.names)
    return df.astype({c.name: pandas_dtype(c) for c in schema.columns})


N = None


def world(events, sessions=None, showcase=None) -> LiveCommerceTables:
    """Streamers 10-12, products 100-104, users 1-3; events (ts, user, type, session, product)."""
    sessions = sessions or [(1, 10, 0, 100), (2, 11, 50, 150), (3, 12, 200, 300), (4, 10, 250, 400)]
    showcase = showcase or [
        (1, 100, 0, 50), (1, 101, 40, 90), (2, 102, 60, 70), (3, 103, 210, 220), (4, 100, 250, 400),
    ]  # fmt: skip
    owner = {s: st_ for s, st_, _, _ in sessions}
    rows = []
    for k, (ts, user, kind, session, product) in enumerate(events):
        streamer = owner.get(session) if session is not None else None
        amount = 9.9 if kind == "purchase" else None
        rows.append((k + 1, ts, user, kind, session, streamer, product, N, amount, N, N))
    return LiveCommerceTables(
        users=frame("users", [(u, "18-24", "f", "north", 0) for u in (1, 2, 3)]),
        streamers=frame("streamers", [(10, "beauty", 100), (11, "food", 5), (12, "tech", 0)]),
        products=frame(
            "products",
            [(p, "c", "b", False, 10.0 * (p - 99), "kw") for p in (100, 101, 102, 103, 104)],
        ),
        live_sessions=frame("live_sessions", sessions),
        showcase=frame("showcase", showcase),
        events=frame("events", rows),
    )


ENTERS = [
    (10, 1, "enter", 1, N), (60, 2, "enter", 2, N), (70, 1, "enter", 2, N), (90, 1, "enter", 1, N),
    (120, 2, "enter", 2, N), (130, 2, "enter", 2, N), (210, 1, "enter", 3, N),
    (260, 1, "enter", 4, N), (280, 2, "enter", 3, N), (300, 2, "enter", 4, N),
    (300, 3, "like", 4, N),
]  # fmt: skip


def candidate_rows(targets, vocab):
    return [vocab.decode(targets.candidates(k)).tolist() for k in range(len(targets))]


def test_live_room_split_on_hand_made_schedule():
    tables = world(ENTERS)
    split = live_time_split(tables, target="room", valid_ts=100, test_ts=250)
    vocab = split.item_vocab
    inter = room_interactions(tables)
    assert len(inter) == 10 and vocab.ids.tolist() == [10, 11, 12]
    assert raw_rows(split.train, inter) == {1: [10, 11, 10], 2: [11]}
    # user 2 enters session 2 twice in the window: one target
    assert vocab.decode(split.valid.item).tolist() == [11, 12]
    assert candidate_rows(split.valid, vocab) == [[11], [12]]  # session 1 ended at 100
    assert vocab.decode(split.test.item).tolist() == [10, 12, 10]
    assert candidate_rows(split.test, vocab) == [[10, 12]] * 3  # session 3 live until 300
    assert raw_rows(split.test_history, inter) == {1: [10, 11, 10, 12], 2: [11, 11, 11]}
    assert split.meta["exclude_seen"] is False and split.meta["n_evaluated_users"] == 2
    assert split.meta["test_targets_in_history"] == 1  # user 1 returns to streamer 10
    assert split.item_features.categorical["category"].tolist() == [0, 0, 1, 2, 3]
    every = live_time_split(tables, target="room", valid_ts=100, test_ts=250, dedupe=False)
    assert len(every.valid) == 3


def test_live_room_split_rejects_enter_into_offline_room():
    events = ENTERS + [(500, 3, "enter", 1, N)]  # session 1 ended at 100
    with pytest.raises(ValueError, match=r"event_id 12: streamer 10 was not available at ts 500"):
        live_time_split(world(events), target="room", valid_ts=100, test_ts=250)
    split = live_time_split(
        world(events), target="room", valid_ts=100, test_ts=250, off_shelf="drop"
    )
    assert len(split.test) == 3 and split.meta["test_off_shelf_dropped"] == 1


def test_live_room_split_rejects_inconsistent_enter():
    tables = world(ENTERS)
    tables.events.loc[0, "streamer_id"] = 12
    with pytest.raises(ValueError, match="event_id 1: enter names streamer 12 but live session 1"):
        live_time_split(tables, target="room", valid_ts=100, test_ts=250)


PRODUCT_EVENTS = [
    (20, 1, "click", 1, 100), (60, 2, "click", 2, 102),
    (120, 1, "click", 2, 102), (125, 1, "cart", 2, 102), (215, 2, "click", 3, 103),
    (260, 1, "purchase", 4, 100), (290, 2, "click", 3, 103), (295, 2, "enter", 3, N),
]  # fmt: skip


def test_live_product_split_shelves():
    tables = world(PRODUCT_EVENTS)
    split = live_time_split(tables, target="product", valid_ts=100, test_ts=250)
    vocab = split.item_vocab
    assert len(product_interactions(tables)) == 7 and split.n_items == 7
    assert vocab.decode(split.valid.item).tolist() == [102, 103]
    assert candidate_rows(split.valid, vocab) == [[102], [103]]
    assert vocab.decode(split.test.item).tolist() == [100, 103]
    assert candidate_rows(split.test, vocab) == [[100, 103], [100, 103]]
    assert split.meta["target"] == "product"
    with pytest.raises(ValueError, match="event_id 3: product 102 was not available at ts 120"):
        live_time_split(tables, target="product", valid_ts=100, test_ts=250, shelf="showcase")
    slots = live_time_split(
        tables, target="product", valid_ts=100, test_ts=250, shelf="showcase", off_shelf="drop"
    )
    assert candidate_rows(slots.test, vocab) == [[100]]
    assert slots.meta["valid_off_shelf_dropped"] == 1  # 102's slot ended at 70


def test_live_split_rejects_unknown_ids():
    tables = world(PRODUCT_EVENTS)
    tables.events.loc[1, "product_id"] = 999
    with pytest.raises(ValueError, match=r"event_id 2: field 'product_id' = 999 is not in table"):
        product_interactions(tables)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(10, 12), st.integers(0, 200), st.integers(0, 60)),
        min_size=1,
        max_size=12,
    ),
    st.lists(st.tuples(st.integers(1, 3), st.integers(0, 10_000)), min_size=1, max_size=30),
)
def test_live_room_candidates_property(schedule, visits):
    sessions = [(k + 1, s, a, a + d) for k, (s, a, d) in enumerate(schedule)]
    events = []
    for user, pick in visits:
        sid, _, a, b = sessions[pick % len(sessions)]
        events.append((a + pick % (b - a + 1), user, "enter", sid, N))
    tables = world(sorted(events), sessions=sessions, showcase=[(1, 100, 0, 0)])
    split = live_time_split(tables, target="room", valid_frac=0.3, test_frac=0.3)
    vocab = split.item_vocab
    for targets in (split.valid, split.test):
        rows = candidate_rows(targets, vocab)
        for k, t in enumerate(targets.ts):
            expected = sorted({s for _, s, a, b in sessions if a <= t <= b})
            assert rows[k] == expected
            assert vocab.decode(targets.item[k : k + 1])[0] in rows[k]


def test_product_and_room_features_align_with_vocab():
    tables = world(PRODUCT_EVENTS)
    tables.products = frame(
        "products",
        [
            (104, "tea", "b2", True, 99.0, "green tea"),
            (100, "beauty", "b1", False, 0.0, "red"),
            (101, "beauty", N, False, 9.0, N),
        ],
    )
    vocab = Vocab.build("product", np.array([100, 101, 104]))
    f = product_features(tables, vocab)
    assert f.categorical["category"].tolist() == [0, 0, 1, 1, 2]
    assert f.categorical["brand"].tolist() == [0, 0, 1, 0, 2]
    assert f.categorical["imported"].tolist() == [0, 0, 1, 1, 2]
    np.testing.assert_allclose(f.numeric["price"], [np.nan, np.nan, 0.0, 9.0, 99.0])
    np.testing.assert_allclose(f.numeric["log_price"], np.log1p([np.nan, np.nan, 0, 9, 99]))
    assert f.categorical["price_band"][2] < f.categorical["price_band"][3] < 11
    assert f.token_names == ("green", "red", "tea")
    assert f.tokens.toarray().tolist() == [[0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]]
    rooms = room_features(tables, Vocab.build("streamer", np.array([10, 11, 12])))
    assert rooms.categorical["category"].tolist() == [0, 0, 1, 2, 3]
    np.testing.assert_allclose(rooms.numeric["log_followers"][2:], np.log1p([100, 5, 0]))
