"""Session state, its store, and session features online vs offline (recsys.ranking)."""

from __future__ import annotations

import math
import sys
import threading

import numpy as np
import pandas as pd
import pytest

from recsys.ranking import (
    EVENT_CODE,
    FEATURE_INDEX,
    FEATURE_NAMES,
    NO_ID,
    UNKNOWN,
    Candidates,
    ItemLookup,
    SessionConfig,
    SessionEvent,
    SessionState,
    SessionStore,
    event_columns,
    query_candidates,
    session_features_offline,
)
from recsys.ranking.store import SNAPSHOT_FORMAT

F = FEATURE_INDEX
HL = 1800.0
N_PRODUCTS, N_STREAMERS = 20, 5


@pytest.fixture(scope="module")
def lookup():
    """Products 0..19 in categories p % 3 at price 10 * (p + 1); streamers 0..4 in s % 3."""
    products = pd.DataFrame(
        {
            "product_id": np.arange(N_PRODUCTS),
            "category": [f"c{p % 3}" for p in range(N_PRODUCTS)],
            "price": 10.0 * (np.arange(N_PRODUCTS) + 1),
        }
    )
    streamers = pd.DataFrame(
        {"streamer_id": np.arange(N_STREAMERS), "category": [f"c{s % 3}" for s in range(5)]}
    )
    return ItemLookup.from_tables(products, streamers)


def ev(ts, user, kind, session=NO_ID, streamer=NO_ID, product=NO_ID, value=math.nan):
    return SessionEvent(ts, user, kind, session, streamer, product, value)


def feed(store: SessionStore, events) -> SessionStore:
    for e in events:
        store.update(e)
    return store


# ---------------------------------------------------------------- state and features, by hand


def test_features_match_a_hand_computation(lookup):
    store = feed(
        SessionStore(lookup=lookup),
        [
            ev(0, 7, "enter", session=10, streamer=1),  # streamer 1: category c1
            ev(60, 7, "click", session=10, streamer=1, product=4),  # product 4: c1, price 50
            ev(90, 7, "like", session=10, streamer=1),
            ev(100, 7, "cart", session=10, streamer=1, product=4),
        ],
    )
    x = store.features(7, Candidates.products([4, 5], streamer=[1, 2], session=[10, 20]), now=120)
    d = lambda dt: 2.0 ** (-dt / HL)  # noqa: E731
    room = (d(120) + d(60) + 0.1 * d(30) + 2 * d(20), 0.0)  # enter, click, like, cart
    assert x[:, F["has_session"]].tolist() == [1.0, 1.0]
    assert x[:, F["minutes_since_last_event"]].tolist() == [20 / 60, 20 / 60]
    assert x[:, F["session_events"]].tolist() == [4.0, 4.0]
    assert x[:, F["in_room"]].tolist() == [1.0, 0.0]
    assert x[:, F["room_dwell_s"]].tolist() == [120.0, 0.0]
    assert x[:, F["visit_engagement"]].tolist() == [1.0, 0.0]
    np.testing.assert_allclose(x[:, F["room_affinity"]], room, rtol=1e-12)
    np.testing.assert_allclose(x[:, F["room_engagement"]], [2.0 ** (-30 / 600), 0.0], rtol=1e-12)
    # Category c1 got every weight; product 5 is in c2, which the viewer never touched.
    np.testing.assert_allclose(x[:, F["category_affinity"]], room, rtol=1e-12)
    assert x[:, F["category_share"]].tolist() == [1.0, 0.0]
    np.testing.assert_allclose(x[:, F["product_affinity"]], [d(60) + 2 * d(20), 0], rtol=1e-12)
    assert x[:, F["in_cart"]].tolist() == [1.0, 0.0]
    # Mean log price of touched products is log 50; product 5 costs 60.
    np.testing.assert_allclose(x[:, F["log_price_ratio"]], [0.0, math.log(60 / 50)], atol=1e-12)


def test_no_session_gives_neutral_features(lookup):
    x = SessionStore(lookup=lookup).features(1, Candidates.rooms([0, 1]), now=10)
    expected = np.zeros((2, len(FEATURE_NAMES)))
    expected[:, F["minutes_since_last_event"]] = SessionConfig().ttl_s / 60
    np.testing.assert_array_equal(x, expected)


def test_leave_ends_the_visit_and_reentry_resets_its_engagement(lookup):
    store = feed(
        SessionStore(lookup=lookup),
        [
            ev(0, 1, "enter", session=10, streamer=1),
            ev(5, 1, "comment", session=10, streamer=1),
            ev(9, 1, "leave", session=99, streamer=3, value=9.0),  # another room: no effect
            ev(10, 1, "leave", session=10, streamer=1, value=10.0),
        ],
    )
    room = Candidates.rooms([1], session=[10])
    assert store.features(1, room, now=20)[0, F["in_room"]] == 0.0
    store.update(ev(30, 1, "enter", session=10, streamer=1))
    x = store.features(1, room, now=40)[0]
    assert (x[F["in_room"]], x[F["room_dwell_s"]], x[F["visit_engagement"]]) == (1, 10, 0)


def test_cart_purchase_coupon_refund_follow(lookup):
    store = feed(
        SessionStore(lookup=lookup),
        [
            ev(0, 1, "coupon_claim", product=3, value=5.0),
            ev(1, 1, "coupon_claim", product=NO_ID, value=2.0),  # any product
            ev(2, 1, "cart", product=3),
            ev(3, 1, "cart", product=4),
            ev(4, 1, "purchase", product=3, value=35.0),  # uses its own coupon
            ev(5, 1, "follow", session=10, streamer=2),
        ],
    )
    products = Candidates.products([3, 4, 6])
    x = store.features(1, products, now=10)
    assert x[:, F["in_cart"]].tolist() == [0, 1, 0]
    assert x[:, F["bought_in_session"]].tolist() == [1, 0, 0]
    assert x[:, F["coupon_value"]].tolist() == [2, 2, 2]  # the generic coupon remains
    np.testing.assert_allclose(x[:, F["coupon_depth"]], [2 / 40, 2 / 50, 2 / 70])
    assert store.features(1, Candidates.rooms([2, 3]), now=10)[:, F["followed"]].tolist() == [1, 0]
    feed(store, [ev(6, 1, "purchase", product=4, value=48.0), ev(7, 1, "refund", product=3)])
    x = store.features(1, products, now=10)
    assert x[:, F["coupon_value"]].tolist() == [0, 0, 0]  # consumed by the second purchase
    assert x[:, F["bought_in_session"]].tolist() == [0, 1, 0]


def test_rooms_get_no_product_features(lookup):
    store = feed(SessionStore(lookup=lookup), [ev(0, 1, "coupon_claim", value=9.0)])
    x = store.features(1, Candidates.rooms([0]), now=1)[0]
    names = ("product_affinity", "in_cart", "coupon_value", "coupon_depth", "log_price_ratio")
    assert all(x[F[n]] == 0 for n in names)


def test_late_events_land_where_they_would_have_in_order(lookup):
    clicks = [ev(t, 1, "click", product=p) for t, p in ((0, 1), (500, 4), (200, 1), (900, 7))]
    in_order = feed(SessionStore(lookup=lookup), sorted(clicks, key=lambda e: e.ts))
    shuffled = feed(SessionStore(lookup=lookup), clicks)
    c = Candidates.products([1, 4, 7])
    np.testing.assert_allclose(shuffled.features(1, c, 1000), in_order.features(1, c, 1000))


def test_unknown_ids_count_as_themselves_but_move_no_category(lookup):
    store = feed(SessionStore(lookup=lookup), [ev(0, 1, "click", product=999)])
    x = store.features(1, Candidates.products([999]), now=0)[0]
    assert x[F["product_affinity"]] == 1.0 and x[F["category_affinity"]] == 0.0
    assert lookup.product(999)[0] == UNKNOWN and math.isnan(lookup.product(999)[1])


def test_per_viewer_tables_are_capped(lookup):
    store = SessionStore(lookup=lookup, config=SessionConfig(max_items=3))
    feed(store, [ev(t, 1, "click", product=p) for t, p in enumerate([1, 2, 3, 4, 2, 5])])
    assert [k for k, _ in store.state_dict(1, 10)["products"]] == [4, 2, 5]


# ---------------------------------------------------------------- store: TTL, cap, threads


def test_idle_viewers_expire_and_restart_fresh(lookup):
    store = SessionStore(lookup=lookup, config=SessionConfig(ttl_s=100))
    feed(store, [ev(0, 1, "click", product=1), ev(50, 2, "click", product=2)])
    assert store.peek(1, 100) is not None and store.peek(1, 101) is None
    store.update(ev(140, 3, "click", product=3))  # sweeps viewer 1 (idle 140 s), keeps 2
    assert 1 not in store and 2 in store and store.n_expired == 1
    store.update(ev(400, 2, "click", product=4))  # viewer 2 idle 350 s: a new session
    assert store.state_dict(2, 400)["n_events"] == 1 and 3 not in store
    assert store.n_expired == 3


def test_store_keeps_the_most_recently_updated_viewers(lookup):
    store = SessionStore(lookup=lookup, config=SessionConfig(max_users=3))
    feed(store, [ev(t, u, "like", session=1, streamer=1) for t, u in enumerate([1, 2, 3, 1, 4])])
    assert list(store._states) == [3, 1, 4] and store.n_evicted == 1


def test_concurrent_updates_lose_nothing(lookup):
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    store = SessionStore(lookup=lookup)
    n_threads, n_events = 8, 1500

    def hammer(k: int) -> None:
        for i in range(n_events):
            store.update(ev(i, i % 5, "click", product=(k + i) % N_PRODUCTS))
            if i % 50 == 0:
                store.features(i % 5, Candidates.products([1, 2]), now=i)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(n_threads)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(before)
    counts = [store.state_dict(u, n_events)["n_events"] for u in range(5)]
    assert counts == [n_threads * n_events // 5] * 5
    # Every click weighs 1 and lands in some category, whatever order the threads ran in, so
    # viewer 0's total category affinity (affinity / share of any category) is known exactly.
    x = store.features(0, Candidates.products([0]), now=n_events)[0]
    expected = n_threads * sum(2.0 ** (-(n_events - i) / HL) for i in range(0, n_events, 5))
    total = x[F["category_affinity"]] / x[F["category_share"]]
    assert total == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- snapshot / restore


def test_snapshot_round_trip(tiny_world, tmp_path):
    lookup = ItemLookup.from_tables(tiny_world.products, tiny_world.streamers)
    columns = event_columns(tiny_world.events)
    half = len(columns) // 2
    store = SessionStore(lookup=lookup, config=SessionConfig(ttl_s=3600, max_users=300))
    store.replay(columns, 0, half)
    store.save(tmp_path / "sessions.bin")
    back = SessionStore.load(tmp_path / "sessions.bin", lookup=lookup)
    assert back.config == store.config and list(back._states) == list(store._states)
    assert all(back._states[u] == s for u, s in store._states.items())
    assert (back.n_expired, back.n_evicted) == (store.n_expired, store.n_evicted)
    store.replay(columns, half)
    back.replay(columns, half)  # both continue identically (caps and TTL included)
    assert list(back._states) == list(store._states)
    assert all(back._states[u] == s for u, s in store._states.items())


def test_restore_rejects_what_is_not_a_snapshot(lookup):
    import json
    import zlib

    with pytest.raises(ValueError, match="not a session store snapshot"):
        SessionStore.restore(b"hello", lookup=lookup)
    future = {"format": SNAPSHOT_FORMAT, "version": 99, "config": {}, "states": []}
    with pytest.raises(ValueError, match="version 99 is not supported"):
        SessionStore.restore(zlib.compress(json.dumps(future).encode()), lookup=lookup)


# ---------------------------------------------------------------- offline == online, no leakage

ROOM_TYPES = ("enter", "leave", "comment", "like", "share", "follow")
PRODUCT_TYPES = ("click", "cart", "purchase", "refund", "coupon_claim")


def random_events(rng: np.random.Generator, n: int, n_users: int = 6, span: int = 3000):
    """A logged events table: rooms, products (some unknown), coupons, ties in time."""
    kind = rng.choice(ROOM_TYPES + PRODUCT_TYPES, size=n)
    streamer = rng.integers(0, N_STREAMERS, n)
    product = rng.integers(0, N_PRODUCTS + 2, n)  # 20, 21: not in the lookup
    is_room = np.isin(kind, ROOM_TYPES)
    in_room = is_room | (rng.random(n) < 0.5)
    generic = (kind == "coupon_claim") & (rng.random(n) < 0.3)
    frame = pd.DataFrame(
        {
            "event_id": rng.permutation(n),
            "ts": rng.integers(0, span, n),
            "user_id": 1000 + rng.integers(0, n_users, n),
            "event_type": kind,
            "session_id": pd.array(np.where(in_room, streamer * 10, -1), dtype="Int64"),
            "streamer_id": pd.array(np.where(in_room, streamer, -1), dtype="Int64"),
            "product_id": pd.array(np.where(is_room | generic, -1, product), dtype="Int64"),
            "dwell_s": np.where(kind == "leave", rng.integers(1, 600, n), np.nan),
            "amount": np.where(np.isin(kind, ("purchase", "refund")), 9.5, np.nan),
            "coupon_value": np.where(kind == "coupon_claim", rng.choice([5.0, 10.0], n), np.nan),
        }
    )
    for col in ("session_id", "streamer_id", "product_id"):
        frame.loc[frame[col] == -1, col] = pd.NA
    return frame


def random_queries(rng: np.random.Generator, n: int, n_users: int = 7, span: int = 3200):
    kind = rng.choice(["room", "product"], n)
    streamer = rng.integers(0, N_STREAMERS, n)
    return pd.DataFrame(
        {
            "user_id": 1000 + rng.integers(0, n_users, n),  # user 1006 never acts
            "ts": rng.integers(0, span, n),
            "kind": kind,
            "streamer_id": streamer,
            "session_id": pd.array(np.where(rng.random(n) < 0.7, streamer * 10, pd.NA), "Int64"),
            "product_id": pd.array(
                np.where(kind == "product", rng.integers(0, N_PRODUCTS + 2, n), pd.NA), "Int64"
            ),
        },
        index=pd.RangeIndex(100, 100 + n),
    )


def online_features(events: pd.DataFrame, queries: pd.DataFrame, lookup, config) -> np.ndarray:
    """Feed a live store one event at a time; answer each query when its time comes."""
    store = SessionStore(lookup=lookup, config=config)
    stream = [
        SessionEvent.from_record(r)
        for r in events.sort_values(["ts", "event_id"]).to_dict("records")
    ]
    candidates = query_candidates(queries)
    out = np.zeros((len(queries), len(FEATURE_NAMES)))
    i = 0
    for q in np.argsort(queries["ts"].to_numpy(), kind="stable"):
        now = int(queries["ts"].iloc[q])
        while i < len(stream) and stream[i].ts < now:
            store.update(stream[i])
            i += 1
        out[q] = store.features(int(queries["user_id"].iloc[q]), candidates.take([q]), now)[0]
    return out


CONFIGS = {
    "default": SessionConfig(),
    "tight": SessionConfig(ttl_s=400, max_users=3, max_items=4, half_life_s=300.0),
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_offline_features_equal_online_features(lookup, seed, config):
    rng = np.random.default_rng(seed)
    events, queries = random_events(rng, 1500), random_queries(rng, 400)
    offline = session_features_offline(events, queries, lookup=lookup, config=CONFIGS[config])
    online = online_features(events, queries, lookup, CONFIGS[config])
    assert offline.index.equals(queries.index)
    np.testing.assert_array_equal(offline.to_numpy(), online)
    assert offline["has_session"].mean() > 0.3  # the streams do reach the queries


@pytest.mark.parametrize("seed", [0, 1])
def test_events_at_or_after_the_query_time_change_nothing(lookup, seed):
    rng = np.random.default_rng(seed)
    events = random_events(rng, 1500)
    cut = 1500
    queries = random_queries(rng, 200)
    queries["ts"] = np.minimum(queries["ts"], cut)
    before = session_features_offline(events, queries, lookup=lookup)
    future = events["ts"] >= cut
    altered = random_events(np.random.default_rng(seed + 100), int(future.sum()) + 300)
    altered["ts"] = cut + altered["ts"] % 200  # some land exactly at the cut
    altered["event_id"] += 10_000
    changed = pd.concat([events.loc[~future], altered], ignore_index=True)
    after = session_features_offline(changed, queries, lookup=lookup)
    pd.testing.assert_frame_equal(before, after)
    moved = queries["ts"] < cut
    later = queries.assign(ts=queries["ts"].where(moved, cut + 150))
    assert not session_features_offline(changed, later, lookup=lookup).equals(
        session_features_offline(events, later, lookup=lookup)
    )


def test_offline_equals_online_on_a_simulated_world(tiny_world):
    lookup = ItemLookup.from_tables(tiny_world.products, tiny_world.streamers)
    events = tiny_world.events
    clicks = events.loc[events["event_type"] == "click"].iloc[::5]
    queries = pd.DataFrame(
        {
            "user_id": clicks["user_id"],
            "ts": clicks["ts"],
            "kind": "product",
            "product_id": clicks["product_id"],
            "streamer_id": clicks["streamer_id"],
            "session_id": clicks["session_id"],
        }
    )
    offline = session_features_offline(events, queries, lookup=lookup)
    np.testing.assert_array_equal(
        offline.to_numpy(), online_features(events, queries, lookup, SessionConfig())
    )
    # Viewers click products in the room they are watching, and that room's category.
    assert offline["in_room"].mean() > 0.9
    assert offline["category_share"].mean() > 0.8


# ---------------------------------------------------------------- bad input


def test_bad_events_and_queries_are_named(lookup):
    events = random_events(np.random.default_rng(0), 20)
    with pytest.raises(ValueError, match="unknown event_type 'wave'"):
        event_columns(events.assign(event_type="wave"))
    missing = events.assign(event_type="click", product_id=pd.array([pd.NA] * 20, "Int64"))
    with pytest.raises(ValueError, match=r"event_id \d+ \(click\): field 'product_id'"):
        event_columns(missing)
    with pytest.raises(ValueError, match="unknown event_type"):
        SessionEvent(0, 1, "wave")
    queries = random_queries(np.random.default_rng(0), 5)
    with pytest.raises(ValueError, match="queries row 0: kind 'shop'"):
        query_candidates(queries.assign(kind="shop"))
    with pytest.raises(ValueError, match="needs 'product_id'"):
        query_candidates(queries.assign(kind="product", product_id=pd.NA))
    with pytest.raises(ValueError, match="ttl_s must be > 0"):
        SessionConfig(ttl_s=0)


def test_lookup_from_tables(tiny_world, lookup):
    world = ItemLookup.from_tables(tiny_world.products, tiny_world.streamers)
    p = tiny_world.products.iloc[3]
    category, price = world.product(int(p["product_id"]))
    assert world.categories[category] == p["category"] and price == p["price"]
    cats, prices = world.products(np.array([p["product_id"], -5]))
    assert cats.tolist() == [category, UNKNOWN] and np.isnan(prices[1])
    assert lookup.streamers(np.array([4, 9])).tolist() == [1, UNKNOWN]
    dup = pd.DataFrame({"product_id": [1, 1], "category": ["a", "a"], "price": [1.0, 2.0]})
    with pytest.raises(ValueError, match="table 'products'"):
        ItemLookup.from_tables(dup, tiny_world.streamers)


def test_event_codes_follow_the_schema():
    from recsys.data.schema import EVENT_TYPES

    assert list(EVENT_CODE) == list(EVENT_TYPES)
    assert SessionEvent.from_record(
        {
            "ts": 5,
            "user_id": 2,
            "event_type": "leave",
            "session_id": 3,
            "streamer_id": None,
            "dwell_s": 12.0,
        }
    ) == SessionEvent(5, 2, "leave", 3, NO_ID, NO_ID, 12.0)
    assert SessionState() == SessionState.from_dict(SessionState().to_dict())
