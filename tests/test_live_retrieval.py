"""Live-now retrieval: schedules, every LiveRetriever strategy, IVF sub-indexes, auto's rule."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.retrieval import STRATEGIES, CandidateIndex, LiveRetriever, LiveSchedule, _faiss
from recsys.retrieval.live import EXACT_MAX, EXACT_MAX_IVF, default_exact_max
from tests.test_retrieval import assert_same_top, clustered, exact_top, gaussian, recall


@pytest.fixture(autouse=True, scope="module")
def faiss_one_thread():
    """Tiny indexes search fastest on one thread (and far faster on busy machines)."""
    before = _faiss.threads()
    _faiss.set_threads(1)
    yield
    _faiss.set_threads(before)


LIVE_IDS = np.arange(60, dtype=np.int64) * 5 + 3
LIVE_X = gaussian(60, seed=5)


@pytest.fixture(scope="module")
def live_indexes() -> dict[str, CandidateIndex]:
    return {
        "Flat": CandidateIndex.build(LIVE_X, LIVE_IDS),
        "HNSW8,Flat": CandidateIndex.build(LIVE_X, LIVE_IDS, factory="HNSW8,Flat", ef_search=8),
        "IVF4,Flat": CandidateIndex.build(LIVE_X, LIVE_IDS, factory="IVF4,Flat", nprobe=1),
        "IVF4,PQ2x4,RFlat": CandidateIndex.build(
            LIVE_X, LIVE_IDS, factory="IVF4,PQ2x4,RFlat", nprobe=1, k_factor=2
        ),
    }


def brute_live(entity, start, end, t) -> np.ndarray:
    return np.unique(entity[(start <= t) & (t <= end)])


schedules = st.lists(
    st.tuples(st.integers(0, 59), st.integers(0, 100), st.integers(0, 30)), max_size=80
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    intervals=schedules,
    times=st.lists(st.integers(-5, 135), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
    k=st.integers(1, 12),
)
def test_live_search_returns_only_live_entities_exact_top_k_and_segment_as_selector(
    live_indexes, intervals, times, seed, k
):
    rows = np.array(intervals, dtype=np.int64).reshape(-1, 3)
    entity, start, end = LIVE_IDS[rows[:, 0]], rows[:, 1], rows[:, 1] + rows[:, 2]
    schedule = LiveSchedule(entity, start, end)
    ts = np.array(times)
    queries = gaussian(len(ts), seed=seed)
    for t in np.unique(ts):
        np.testing.assert_array_equal(schedule.live_at(t), brute_live(entity, start, end, t))
    for name, index in live_indexes.items():
        retriever = LiveRetriever(index, schedule, cache_size=2)
        found = {s: retriever.search(queries, ts, k, strategy=s) for s in STRATEGIES}
        for strategy, (scores, ids) in found.items():
            for b, t in enumerate(ts):
                live = brute_live(entity, start, end, t)
                assert np.isin(ids[b][ids[b] >= 0], live).all(), (name, strategy, t)
                if name == "Flat" or strategy == "exact":
                    want = exact_top(LIVE_X, LIVE_IDS, queries[b : b + 1], k, live)
                    assert_same_top((scores[b : b + 1], ids[b : b + 1]), want)
        if index.can_subset:  # same lists, same widened nprobe: the same candidates scanned
            assert_same_top(found["segment"], found["selector"])


def test_one_time_for_the_whole_batch_and_empty_moments():
    schedule = LiveSchedule(LIVE_IDS[[1, 2, 3]], np.array([0, 10, 10]), np.array([5, 20, 10]))
    retriever = LiveRetriever(CandidateIndex.build(LIVE_X, LIVE_IDS), schedule)
    np.testing.assert_array_equal(retriever.live_at(10), LIVE_IDS[[2, 3]])
    np.testing.assert_array_equal(retriever.live_at(11), LIVE_IDS[[2]])
    for strategy in STRATEGIES:
        _, ids = retriever.search(gaussian(3), 10, 4, strategy=strategy)
        assert set(ids[:, :2].ravel()) == set(LIVE_IDS[[2, 3]]) and (ids[:, 2:] == -1).all()
        scores, ids = retriever.search(gaussian(3), 7, 4, strategy=strategy)
        assert (ids == -1).all() and np.isneginf(scores).all()


def test_auto_scans_small_live_sets_exactly_and_large_ones_by_index_kind(live_indexes):
    schedule = LiveSchedule(LIVE_IDS, np.zeros(60, dtype=np.int64), np.full(60, 9))
    above = {"Flat": "selector", "HNSW8,Flat": "selector", "IVF4,Flat": "segment"}
    above["IVF4,PQ2x4,RFlat"] = "segment"
    defaults = {"Flat": sys.maxsize, "HNSW8,Flat": EXACT_MAX, "IVF4,Flat": EXACT_MAX_IVF}
    assert default_exact_max(live_indexes["IVF4,PQ2x4,RFlat"]) == EXACT_MAX_IVF
    for name, index in live_indexes.items():
        assert LiveRetriever(index, schedule).exact_max == defaults.get(name, EXACT_MAX_IVF)
        for exact_max, built in ((60, "exact"), (59, above[name])):
            retriever = LiveRetriever(index, schedule, exact_max=exact_max)
            retriever.search(gaussian(2), 5, 3)
            (state,) = retriever._cache.values()
            made = [f for f in ("selector", "segment", "exact") if getattr(state, f) is not None]
            assert made == [built], (name, exact_max)
    flat = LiveRetriever(live_indexes["HNSW8,Flat"], schedule)
    assert flat.choose(10**6, "segment") == "exact"  # no IVF stage to reuse


def test_selector_widened_to_every_list_is_exact(live_indexes):
    share = LIVE_IDS[::6]  # 10 of 60 live: widening by 6 ** 2 probes all 4 lists
    schedule = LiveSchedule(share, np.zeros(len(share), dtype=np.int64), np.full(len(share), 9))
    q = gaussian(5, seed=4)
    want = exact_top(LIVE_X, LIVE_IDS, q, 4, share)
    narrow = LiveRetriever(live_indexes["IVF4,Flat"], schedule, exact_max=0, widen=0)
    wide = LiveRetriever(live_indexes["IVF4,Flat"], schedule, exact_max=0, widen=2)
    assert_same_top(wide.search(q, 3, 4), want)
    assert recall(narrow.search(q, 3, 4)[1], want[1]) < 1


@pytest.mark.parametrize(
    "factory, params",
    [("IVF16,Flat", {"nprobe": 2}), ("IVF16,PQ4x4,RFlat", {"nprobe": 2, "k_factor": 2})],
)
def test_ivf_segment_equals_selector_search_at_the_same_nprobe(factory, params):
    x, ids = clustered(2000, 20, seed=3), IDS_2000
    index = CandidateIndex.build(x, ids, factory=factory, **params)
    live = np.sort(np.random.default_rng(4).choice(ids, 300, replace=False))
    schedule = LiveSchedule(live, np.zeros(300, dtype=np.int64), np.full(300, 9))
    q = clustered(30, 20, seed=5)
    retriever = LiveRetriever(index, schedule, widen=0)
    segment = retriever.search(q, 1, 10, strategy="segment")
    np.testing.assert_array_equal(segment[0], retriever.search(q, 1, 10, "selector")[0])
    np.testing.assert_array_equal(segment[1], retriever.search(q, 1, 10, "selector")[1])
    (state,) = retriever._cache.values()
    assert state.segment.config.nprobe == 2 and len(state.segment) == 300
    exact = exact_top(x, ids, q, 10, live)
    assert 0.5 < recall(segment[1], exact[1]) < 1  # approximate: probes 2 of 16 lists
    wide = LiveRetriever(index, schedule, widen=0.5)
    assert wide.choose(300) == "exact" and wide.choose(300, "segment") == "segment"
    assert_same_top(wide.search(q, 1, 10, "segment"), wide.search(q, 1, 10, "selector"))
    assert wide._cache[0].segment.config.nprobe == round(2 * (2000 / 300) ** 0.5)


IDS_2000 = np.random.default_rng(6).permutation(2000).astype(np.int64) * 7 - 3000


def test_segment_build_reuses_the_trained_quantizer_and_codebooks(monkeypatch):
    x = clustered(2000, 20, seed=3)
    for factory in ("IVF16,Flat", "IVF16,PQ4x4,RFlat"):
        index = CandidateIndex.build(x, IDS_2000, factory=factory)
        parent = _faiss._ivf(index._index)
        monkeypatch.setattr(_faiss, "train", None)  # any training call would fail
        pos = np.array([3, 40, 41, 977, 1999])  # 5 vectors could not train 16 lists
        sub = index.subset(pos)
        monkeypatch.undo()
        child = _faiss._ivf(sub._index)
        assert child.is_trained and child.nprobe == parent.nprobe and child.nlist == 16
        centroids = parent.quantizer.reconstruct_n(0, 16)
        np.testing.assert_array_equal(child.quantizer.reconstruct_n(0, 16), centroids)
        lists = _faiss._list_numbers(child, np.arange(5))
        np.testing.assert_array_equal(lists, _faiss._list_numbers(parent, pos))
        np.testing.assert_array_equal(sub.ids, IDS_2000[pos])
        np.testing.assert_array_equal(sub.vectors(np.arange(5)), index.vectors(pos))
        # The IVF stage's own decoding: equal only with the same codes and PQ codebooks.
        decoded = child.reconstruct_batch(np.arange(5, dtype=np.int64))
        np.testing.assert_array_equal(decoded, parent.reconstruct_batch(pos.astype(np.int64)))
        if "RFlat" in factory:
            assert sub._index.k_factor == index._index.k_factor


def test_subset_needs_an_ivf_stage_and_valid_positions(live_indexes):
    assert [n for n, index in live_indexes.items() if index.can_subset] == [
        "IVF4,Flat",
        "IVF4,PQ2x4,RFlat",
    ]
    with pytest.raises(ValueError, match="factory 'HNSW8,Flat' has no IVF stage"):
        live_indexes["HNSW8,Flat"].subset(np.arange(3))
    ivf = live_indexes["IVF4,Flat"]
    with pytest.raises(ValueError, match="repeat a position"):
        ivf.subset(np.array([1, 1]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 60\)"):
        ivf.subset(np.array([0, 60]))
    assert len(ivf.subset(np.array([], dtype=np.int64))) == 0


def test_segment_states_are_cached_least_recently_used_first():
    schedule = LiveSchedule(LIVE_IDS[:3], np.array([0, 10, 20]), np.array([5, 15, 25]))
    retriever = LiveRetriever(CandidateIndex.build(LIVE_X, LIVE_IDS), schedule, cache_size=2)
    for t in (0, 10, 0, 20):
        retriever.search(gaussian(1), t, 2)
    assert list(retriever._cache) == [schedule.segment([0])[0], schedule.segment([20])[0]]


def test_live_input_errors():
    index = CandidateIndex.build(LIVE_X, LIVE_IDS)
    with pytest.raises(ValueError, match="availability interval 1: end 3 < start 9"):
        LiveSchedule(np.array([3, 8]), np.array([0, 9]), np.array([5, 3]))
    with pytest.raises(ValueError, match="differ in length"):
        LiveSchedule(np.array([3, 8]), np.array([0]), np.array([5]))
    schedule = LiveSchedule(np.array([3, 4]), np.array([0, 0]), np.array([5, 5]))
    with pytest.raises(ValueError, match="availability entities row 1: id 4 is not in the index"):
        LiveRetriever(index, schedule)
    retriever = LiveRetriever(index, LiveSchedule(np.array([3]), np.array([0]), np.array([5])))
    with pytest.raises(ValueError, match="strategy must be one of"):
        retriever.search(gaussian(1), 1, 3, strategy="post-filter")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        retriever.search(gaussian(1), 1, 0)
    with pytest.raises(ValueError, match="exact_max >= 0"):
        LiveRetriever(index, schedule, exact_max=-1)
    with pytest.raises(ValueError, match="cache_size >= 1"):
        LiveRetriever(index, schedule, cache_size=0)


@pytest.mark.parametrize("target", ["room", "product"])
def test_world_schedule_serves_what_evaluation_counts_as_live(tiny_world, target):
    from recsys.data.splits import live_time_split

    split = live_time_split(tiny_world, target=target)
    schedule = LiveSchedule.from_tables(tiny_world, target, split.item_vocab)
    ids = np.arange(2, split.n_items, dtype=np.int64)  # vocabulary indices, pad and OOV excluded
    index = CandidateIndex.build(gaussian(len(ids), seed=7), ids)
    test = split.test
    ts = test.ts[:40]
    _, found = LiveRetriever(index, schedule).search(gaussian(len(ts), seed=8), ts, 20)
    for b, t in enumerate(ts):
        live = test.candidates(b)
        np.testing.assert_array_equal(schedule.live_at(t), live)
        assert np.isin(found[b][found[b] >= 0], live).all()
        assert np.count_nonzero(found[b] >= 0) == min(20, len(live))
