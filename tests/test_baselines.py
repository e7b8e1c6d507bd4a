"""Collaborative-filtering and content-based baselines on tiny hand-made sequences."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.baselines._history import history_matrix
from recsys.baselines.content_based import ContentBased, item_vectors
from recsys.baselines.ease import EASE
from recsys.baselines.item_knn import ItemKNN
from recsys.baselines.matrix_factorization import ALS, BPR
from recsys.baselines.popularity import Popularity
from recsys.baselines.registry import BASELINES, DEFAULT_GRIDS, make_baseline
from recsys.data.interactions import ItemFeatures, UserSequences


def sequences(rows: list[list[int]], n_items: int, ts: list[list[int]] | None = None):
    lengths = [len(r) for r in rows]
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.array([i for r in rows for i in r], dtype=np.int64)
    if ts is None:
        times = np.arange(len(items), dtype=np.int64)
    else:
        times = np.array([t for r in ts for t in r], dtype=np.int64)
    return UserSequences(indptr=indptr, items=items, ts=times, n_items=n_items)


def random_sequences(n_users: int, n_items: int, density: float, seed: int) -> UserSequences:
    """Each user interacts with a random subset of the real items 2..n_items-1, once each."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items - 2)) < density
    return sequences([list(np.flatnonzero(row) + 2) for row in mask], n_items)


def dense(train: UserSequences) -> np.ndarray:
    return train.to_csr(binary=True).toarray().astype(np.float64)


# --- history rows ----------------------------------------------------------------------------


def test_history_matrix_weights_recent_items_and_keeps_latest_repeat():
    hist = sequences([[2, 3, 2, 4], [5]], n_items=6)
    h = history_matrix(hist, np.array([0, 1]), half_life=1.0).toarray()
    # user 0: item 4 last (1), item 2 one step back (0.5, its latest occurrence), item 3 0.25.
    np.testing.assert_allclose(h[0], [0, 0, 0.5, 0.25, 1.0, 0])
    np.testing.assert_allclose(h[1], [0, 0, 0, 0, 0, 1.0])
    binary = history_matrix(hist, np.array([0]))
    np.testing.assert_array_equal(binary.toarray()[0], [0, 0, 1, 1, 1, 0])


# --- popularity ------------------------------------------------------------------------------


def test_popularity_ranks_by_count_for_every_user():
    train = sequences([[2, 3], [3, 4], [3, 2, 5]], n_items=6)
    scores = Popularity().fit(train).score(np.array([0, 2]), train)
    assert scores.shape == (2, 6) and scores.dtype == np.float32
    np.testing.assert_array_equal(scores[0], [0, 0, 2, 3, 1, 1])
    np.testing.assert_array_equal(scores[1], scores[0])


def test_popularity_window_counts_only_recent_events_and_breaks_ties_by_all_time():
    # Items 4 and 5 each have two events in the last 10 time units; item 2 is only old news.
    train = sequences(
        [[2, 2, 4, 4], [2, 5, 4], [3, 5]], n_items=6, ts=[[0, 1, 2, 95], [3, 96, 97], [4, 99]]
    )
    scores = Popularity(window=10).fit(train).score(np.array([0]), train)[0]
    all_time = np.array([0, 0, 3, 1, 3, 2]) / (9 + 1)  # share of 9 events
    np.testing.assert_allclose(scores, [0, 0, 0, 0, 2, 2] + 0.5 * all_time, rtol=1e-6)
    assert scores[4] > scores[5] > scores[2] > scores[3] > scores[1]


def test_popularity_rejects_bad_window_and_unfitted_use():
    with pytest.raises(ValueError, match="window"):
        Popularity(window=0)
    train = sequences([[2]], n_items=3)
    with pytest.raises(RuntimeError, match="fit"):
        Popularity().score(np.array([0]), train)


# --- item kNN --------------------------------------------------------------------------------


def dense_cosine(x: np.ndarray, shrink: float) -> np.ndarray:
    co = x.T @ x
    n = np.diag(co)
    with np.errstate(invalid="ignore"):
        sim = co / (np.sqrt(np.outer(n, n)) + shrink)
    sim = np.nan_to_num(sim)
    np.fill_diagonal(sim, 0.0)
    return sim


@pytest.mark.parametrize("shrink", [0.0, 5.0])
def test_item_knn_similarity_matches_dense_computation(shrink):
    train = random_sequences(n_users=30, n_items=14, density=0.3, seed=0)
    model = ItemKNN(k_neighbours=100, shrink=shrink, block_size=5).fit(train)
    expected = dense_cosine(dense(train), shrink)
    np.testing.assert_allclose(model.similarity_.toarray(), expected, atol=1e-6)
    users = np.array([0, 3, 7])
    scores = model.score(users, train)
    np.testing.assert_allclose(scores, dense(train)[users] @ expected, atol=1e-5)


def test_item_knn_keeps_the_k_most_similar_neighbours_per_item():
    train = random_sequences(n_users=40, n_items=16, density=0.4, seed=1)
    full = dense_cosine(dense(train), shrink=2.0)
    pruned = ItemKNN(k_neighbours=3, shrink=2.0, block_size=4).fit(train).similarity_.toarray()
    for i in range(2, 16):
        kept = np.flatnonzero(pruned[i])
        assert len(kept) == 3
        np.testing.assert_allclose(pruned[i, kept], full[i, kept], atol=1e-6)
        assert full[i, kept].min() >= np.delete(full[i], kept).max() - 1e-9


def test_item_knn_shrinkage_lowers_rare_pair_similarity():
    # Items 2 and 3 co-occur for 20 users; items 4 and 5 for one user only.
    train = sequences([[2, 3]] * 20 + [[4, 5]], n_items=6)
    plain = ItemKNN(shrink=0.0).fit(train).similarity_.toarray()
    shrunk = ItemKNN(shrink=10.0).fit(train).similarity_.toarray()
    assert plain[2, 3] == pytest.approx(1.0) and plain[4, 5] == pytest.approx(1.0)
    assert shrunk[4, 5] == pytest.approx(1 / 11) and shrunk[2, 3] == pytest.approx(20 / 30)


def test_item_knn_recency_weighting_favours_neighbours_of_the_last_item():
    train = sequences([[2, 4]] * 3 + [[3, 5]] * 3, n_items=6)
    hist = sequences([[2, 3]], n_items=6)  # item 3 is the latest
    plain = ItemKNN(shrink=0.0).fit(train).score(np.array([0]), hist)[0]
    recent = ItemKNN(shrink=0.0, recency_half_life=1.0).fit(train).score(np.array([0]), hist)[0]
    assert plain[4] == pytest.approx(plain[5])
    assert recent[5] == pytest.approx(1.0) and recent[4] == pytest.approx(0.5)


# --- EASE ------------------------------------------------------------------------------------


def dense_ease(x: np.ndarray, l2: float) -> np.ndarray:
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_ease_matches_dense_reference_and_has_zero_diagonal():
    train = random_sequences(n_users=50, n_items=14, density=0.35, seed=2)
    x = dense(train)
    model = EASE(l2=3.0, max_items=None, dtype="float64").fit(train)
    np.testing.assert_array_equal(model.items_, np.arange(2, 14))
    expected = dense_ease(x[:, 2:], l2=3.0)
    np.testing.assert_allclose(model.weights_, expected, atol=1e-5)
    assert np.all(np.diag(model.weights_) == 0.0)
    assert model.weights_.flags.c_contiguous  # row-major, so scoring reads whole rows
    users = np.arange(10)
    scores = model.score(users, train)
    np.testing.assert_allclose(scores[:, 2:], x[users, 2:] @ expected, atol=1e-5)
    float32 = EASE(l2=3.0, max_items=None).fit(train)
    np.testing.assert_allclose(float32.weights_, expected, atol=1e-4)


def test_ease_max_items_models_the_most_frequent_items_and_ranks_the_rest_below():
    train = random_sequences(n_users=60, n_items=16, density=0.3, seed=3)
    x = dense(train)
    counts = x.sum(axis=0)
    model = EASE(l2=2.0, max_items=5, dtype="float64").fit(train)
    top = np.sort(np.lexsort((np.arange(16), -counts))[:5])
    np.testing.assert_array_equal(model.items_, top)
    np.testing.assert_allclose(model.weights_, dense_ease(x[:, top], l2=2.0), atol=1e-5)
    scores = model.score(np.arange(60), train)
    rest = np.setdiff1d(np.arange(16), top)
    assert np.all(scores[:, rest].max(axis=1) < scores[:, top].min(axis=1))
    # Among unmodelled items the order is by training count (columns 0/1 have none).
    by_count = rest[np.argsort(counts[rest], kind="stable")]
    assert np.all(np.diff(scores[0, by_count]) >= 0)


# --- ALS / BPR -------------------------------------------------------------------------------


def planted_blocks(seed: int = 4) -> UserSequences:
    """Users 0-29 interact only with items 2-11, users 30-59 only with items 12-21."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(60):
        group = np.arange(2, 12) if user < 30 else np.arange(12, 22)
        rows.append(list(rng.choice(group, size=5, replace=False)))
    return sequences(rows, n_items=22)


# Two latent groups: ALS with two factors, BPR with a few spare ones (its SGD needs them).
MF_MODELS = [
    lambda: ALS(factors=2, regularization=0.1, iterations=15, seed=3, num_threads=1),
    lambda: BPR(factors=8, learning_rate=0.05, iterations=100, seed=3, num_threads=1),
]


@pytest.mark.parametrize("make", MF_MODELS, ids=["als", "bpr"])
def test_factor_models_are_deterministic_for_a_seed(make):
    train = planted_blocks()
    users = np.arange(60)
    first = make().fit(train).score(users, train)
    second = make().fit(train).score(users, train)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("make", MF_MODELS, ids=["als", "bpr"])
def test_factor_models_recover_planted_groups(make):
    train = planted_blocks()
    scores = make().fit(train).score(np.arange(60), train)
    seen = train.to_csr().toarray() > 0
    group_a, group_b = np.arange(2, 12), np.arange(12, 22)
    for user in range(60):
        own, other = (group_a, group_b) if user < 30 else (group_b, group_a)
        unseen = own[~seen[user, own]]
        assert scores[user, unseen].min() > scores[user, other].max(), user


@pytest.mark.parametrize("make", MF_MODELS, ids=["als", "bpr"])
def test_factor_models_fold_in_users_absent_from_training(make):
    train = planted_blocks()
    # User 60 is new: no training row, a history in the second group.
    grown = sequences([list(train.row(u)) for u in range(60)] + [[13, 15]], n_items=22)
    scores = make().fit(train).score(np.array([60]), grown)[0]
    assert scores[[12, 14, 16, 17]].min() > scores[2:12].max()


def test_fold_in_flag_decides_whether_new_history_changes_a_trained_user():
    train = planted_blocks()
    grown = sequences([list(train.row(u)) + [12] for u in range(60)], n_items=22)
    users = np.arange(5)
    for fold_in in (False, True):
        model = BPR(factors=8, iterations=20, seed=1, num_threads=1, fold_in=fold_in).fit(train)
        same = np.array_equal(model.score(users, train), model.score(users, grown))
        assert same is not fold_in


# --- content-based ---------------------------------------------------------------------------


def product_features() -> ItemFeatures:
    """Items 2-4 in category 1, 5-6 in category 2, 7-9 in category 3; tokens red/blue/green."""
    nan = np.nan
    tokens = sp.csr_matrix(
        np.array(
            [
                [0, 0, 0],
                [0, 0, 0],
                [1, 0, 0],  # 2 red
                [0, 0, 1],  # 3 green
                [0, 0, 0],  # 4
                [1, 0, 0],  # 5 red
                [0, 0, 0],  # 6
                [0, 1, 0],  # 7 blue
                [0, 1, 1],  # 8 blue green
                [0, 0, 0],  # 9
            ],
            dtype=np.float32,
        )
    )
    return ItemFeatures(
        categorical={
            "category": np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 3]),
            "brand": np.array([0, 0, 5, 6, 7, 8, 9, 10, 11, 12]),
        },
        numeric={"price": np.array([nan, nan, 10, 12, 11, 50, 55, 200, 210, nan])},
        tokens=tokens,
        token_names=("red", "blue", "green"),
    )


def test_content_based_prefers_items_sharing_category_and_tokens():
    train = sequences([[2, 3], [5, 7], [8, 9]], n_items=10)
    model = ContentBased(popularity_weight=0.0, n_bands=3).fit(
        train, item_features=product_features()
    )
    scores = model.score(np.array([0]), train)[0]
    # Item 4 shares category and price band; 5 shares the token red; 8 shares green.
    assert scores[4] > scores[5] > scores[6]
    assert scores[8] > scores[7] and scores[8] > scores[9]
    assert scores[6] == pytest.approx(0.0, abs=1e-7) and scores[9] == pytest.approx(0.0, abs=1e-7)


def test_content_based_item_vectors_are_unit_rows_and_skip_duplicate_bands():
    features = product_features()
    vectors = item_vectors(features, 10, n_bands=3, token_weight=1.0)
    norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms, [0, 0] + [1] * 8, atol=1e-12)
    log_price = {**features.numeric, "log_price": np.log(features.numeric["price"])}
    with_log = replace(features, numeric=log_price)
    np.testing.assert_array_equal(
        item_vectors(with_log, 10, n_bands=3, token_weight=1.0).toarray(), vectors.toarray()
    )


def test_content_based_works_with_genre_tokens_only_and_uses_popularity_prior():
    genres = sp.csr_matrix(
        np.array([[0, 0], [0, 0], [1, 0], [1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    )
    features = ItemFeatures(tokens=genres, token_names=("Comedy", "Drama"))
    train = sequences([[2], [3, 4], [4, 5]], n_items=7)
    hist = sequences([[2], [], []], n_items=7)
    scores = ContentBased(popularity_weight=0.1).fit(train, item_features=features)
    row = scores.score(np.array([0]), hist)[0]
    assert row[4] > row[3] > row[5] > row[6]  # 4 more popular than 3; 5 more than 6
    assert row[3] == pytest.approx(1.0 + 0.1 * np.log(2) / np.log(3), rel=1e-6)


def test_content_based_reports_misaligned_features():
    train = sequences([[2]], n_items=5)
    bad = ItemFeatures(categorical={"category": np.array([0, 0, 1])})
    with pytest.raises(ValueError, match="categorical 'category' has 3 rows"):
        ContentBased().fit(train, item_features=bad)
    with pytest.raises(ValueError, match="item_features"):
        ContentBased().fit(train)


# --- registry --------------------------------------------------------------------------------


def test_registry_builds_every_baseline_and_every_grid_point():
    assert set(DEFAULT_GRIDS) == set(BASELINES)
    for name, grid in DEFAULT_GRIDS.items():
        assert 1 <= len(grid) <= 12, name
        for point in grid:
            model = make_baseline(name, **point)
            assert isinstance(model, BASELINES[name]) and model.name == name
            assert {k: model.hparams()[k] for k in point} == point
    with pytest.raises(KeyError, match="known: als"):
        make_baseline("nope")


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_fits_and_scores_the_full_catalogue(name):
    train = sequences([[2, 3, 4], [5, 7], [8, 9, 2], [3, 6]], n_items=10)
    small = {"als": {"num_threads": 1}, "bpr": {"num_threads": 1, "iterations": 5}}
    model = make_baseline(name, **small.get(name, {}))
    model.fit(train, item_features=product_features())
    scores = model.score(np.array([3, 0]), train)
    assert scores.shape == (2, 10) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    with pytest.raises(ValueError, match="outside"):
        model.score(np.array([4]), train)
