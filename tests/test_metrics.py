import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.evaluation import (
    coverage,
    hit_rate,
    metrics_from_rank,
    mrr,
    ndcg,
    ndcg_multi,
    per_user_metrics,
    rank_topk,
    recall,
    reciprocal_rank,
    target_rank,
)

# Row 0: target at rank 1; row 1: target at rank 0; row 2: target absent; row 3: -1 padded list.
TOPK = np.array([[5, 3, 7, 2], [2, 4, 6, 8], [9, 8, 7, 6], [4, 3, -1, -1]], dtype=np.int64)
TARGET = np.array([3, 2, 5, 3], dtype=np.int64)


def test_target_rank_hand_computed():
    assert target_rank(TOPK, TARGET).tolist() == [1, 0, -1, 1]
    assert target_rank(TOPK, TARGET, k=1).tolist() == [-1, 0, -1, -1]


def test_single_target_metrics_hand_computed():
    assert hit_rate(TOPK, TARGET, 1).tolist() == [0, 1, 0, 0]
    assert hit_rate(TOPK, TARGET, 2).tolist() == [1, 1, 0, 1]
    np.testing.assert_allclose(
        ndcg(TOPK, TARGET, 4), [1 / math.log2(3), 1.0, 0.0, 1 / math.log2(3)]
    )
    np.testing.assert_allclose(ndcg(TOPK, TARGET, 1), [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(mrr(TOPK, TARGET), [0.5, 1.0, 0.0, 0.5])
    np.testing.assert_allclose(mrr(TOPK, TARGET, k=1), [0.0, 1.0, 0.0, 0.0])


def test_torch_inputs_are_accepted():
    got = ndcg(torch.from_numpy(TOPK), torch.from_numpy(TARGET), 4)
    np.testing.assert_allclose(got, ndcg(TOPK, TARGET, 4))


def test_reciprocal_rank_from_full_rank():
    np.testing.assert_allclose(reciprocal_rank([0, 3, -1, 999]), [1.0, 0.25, 0.0, 0.001])


def test_metrics_from_rank_and_per_user_metrics():
    got = metrics_from_rank([0, 1, 5, -1], ks=(1, 5), prefix="x_")
    assert sorted(got) == ["x_hr@1", "x_hr@5", "x_mrr", "x_ndcg@1", "x_ndcg@5"]
    assert got["x_hr@5"].tolist() == [1, 1, 0, 0]
    np.testing.assert_allclose(got["x_ndcg@5"], [1.0, 1 / math.log2(3), 0.0, 0.0])
    np.testing.assert_allclose(got["x_mrr"], [1.0, 0.5, 1 / 6, 0.0])
    per = per_user_metrics(TOPK, TARGET, ks=(1, 4))
    np.testing.assert_allclose(per["mrr@4"], [0.5, 1.0, 0.0, 0.5])
    np.testing.assert_allclose(per["mrr@1"], [0.0, 1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="exceed"):
        per_user_metrics(TOPK, TARGET, ks=(5,))


def test_multi_target_hand_computed_csr_and_padded_agree():
    topk = np.array([[5, 3, 7, 2], [2, 4, 6, 8], [9, 8, 7, -1]])
    # Row 1 lists item 4 twice: it is one relevant item. Row 2 has no hit.
    padded = np.array([[3, 2, -1], [4, 4, 8], [1, -1, -1]])
    rows = [0, 0, 1, 1, 2]
    cols = [3, 2, 4, 8, 1]
    csr = sp.csr_matrix((np.ones(5), (rows, cols)), shape=(3, 20))
    d = 1 / np.log2(np.arange(4) + 2)
    for relevant in (padded, csr):
        np.testing.assert_allclose(recall(topk, relevant, 2), [0.5, 0.5, 0.0])
        np.testing.assert_allclose(recall(topk, relevant, 4), [1.0, 1.0, 0.0])
        np.testing.assert_allclose(
            ndcg_multi(topk, relevant, 4),
            [(d[1] + d[3]) / (d[0] + d[1]), (d[1] + d[3]) / (d[0] + d[1]), 0.0],
        )
        np.testing.assert_allclose(ndcg_multi(topk, relevant, 1), [0.0, 0.0, 0.0])


def test_multi_target_perfect_ranking_and_missing_relevant():
    topk = np.array([[4, 3, 9]])
    np.testing.assert_allclose(ndcg_multi(topk, np.array([[3, 4]]), 3), [1.0])
    np.testing.assert_allclose(ndcg_multi(topk, np.array([[3, 4, 5, 6]]), 2), [1.0])
    with pytest.raises(ValueError, match="row 1 has none"):
        recall(np.array([[4], [3]]), np.array([[4], [-1]]), 1)


def test_coverage_hand_computed():
    assert coverage(TOPK, n_items=10, k=1) == pytest.approx(0.4)  # {5, 2, 9, 4}
    assert coverage(TOPK, n_items=10, k=4) == pytest.approx(len({5, 3, 7, 2, 4, 6, 8, 9}) / 10)


def _loop_single(topk, target, k):
    hr, nd, rr = [], [], []
    for row, t in zip(topk, target, strict=True):
        lst = list(row[:k])
        r = lst.index(t) if t in lst else None
        hr.append(0.0 if r is None else 1.0)
        nd.append(0.0 if r is None else 1.0 / math.log2(r + 2))
        rr.append(0.0 if r is None else 1.0 / (r + 1))
    return np.array(hr), np.array(nd), np.array(rr)


def _loop_multi(topk, relevant_sets, k):
    rec, nd = [], []
    for row, rel in zip(topk, relevant_sets, strict=True):
        hits = [i for i, item in enumerate(row[:k]) if item in rel]
        dcg = sum(1.0 / math.log2(i + 2) for i in hits)
        idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(rel), k)))
        rec.append(len(hits) / len(rel))
        nd.append(dcg / idcg)
    return np.array(rec), np.array(nd)


def _random_lists(rng, n_rows, n_items, width):
    return np.stack([rng.choice(n_items, size=width, replace=False) for _ in range(n_rows)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_target_matches_loop_reference(seed):
    rng = np.random.default_rng(seed)
    topk = _random_lists(rng, 300, 40, 15)
    target = rng.integers(0, 40, size=300)
    for k in (1, 5, 15):
        hr, nd, rr = _loop_single(topk, target, k)
        np.testing.assert_allclose(hit_rate(topk, target, k), hr, atol=1e-6)
        np.testing.assert_allclose(ndcg(topk, target, k), nd, atol=1e-6)
        np.testing.assert_allclose(mrr(topk, target, k), rr, atol=1e-6)
        per = per_user_metrics(topk, target, ks=(k,))
        np.testing.assert_allclose(per[f"ndcg@{k}"], nd, atol=1e-6)
        from_rank = metrics_from_rank(target_rank(topk, target), ks=(k,))
        np.testing.assert_allclose(from_rank[f"hr@{k}"], hr, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multi_target_matches_loop_reference(seed):
    rng = np.random.default_rng(seed)
    topk = _random_lists(rng, 200, 30, 10)
    sizes = rng.integers(1, 6, size=200)
    padded = np.full((200, 5), -1)
    for i, s in enumerate(sizes):
        padded[i, :s] = rng.integers(0, 30, size=s)  # duplicates allowed on purpose
    sets = [set(row[row >= 0].tolist()) for row in padded]
    for k in (1, 3, 10):
        rec, nd = _loop_multi(topk, sets, k)
        np.testing.assert_allclose(recall(topk, padded, k), rec, atol=1e-6)
        np.testing.assert_allclose(ndcg_multi(topk, padded, k), nd, atol=1e-6)
        loop_cov = len({int(x) for row in topk for x in row[:k]}) / 30
        assert coverage(topk, 30, k) == pytest.approx(loop_cov)


def test_rank_topk_ties_masks_and_padding():
    scores = np.array([[9, 9, 1, 3, 3, -0.0, 0.0, -np.inf]], dtype=np.float32)
    # Columns 0/1 never appear; ties (3, 4) and (-0.0, +0.0) go to the smaller index.
    assert rank_topk(scores, 8).tolist() == [[3, 4, 2, 5, 6, 7, -1, -1]]
    exclude = sp.csr_matrix(([1.0, 1.0], ([0, 0], [4, 2])), shape=(1, 8))
    assert rank_topk(scores, 3, exclude).tolist() == [[3, 5, 6]]
    with pytest.raises(ValueError, match="NaN"):
        rank_topk(np.array([[0.0, np.nan, 1.0]], dtype=np.float32), 1)


def test_rank_topk_matches_sorted_reference_with_many_ties():
    rng = np.random.default_rng(5)
    scores = rng.integers(-3, 4, size=(50, 40)).astype(np.float32)
    top = rank_topk(scores, 12)
    for row, got in zip(scores, top, strict=True):
        expected = sorted(range(2, 40), key=lambda j, row=row: (-row[j], j))[:12]
        assert got.tolist() == expected
