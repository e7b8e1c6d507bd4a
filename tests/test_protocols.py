import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.core import Recommender
from recsys.data.interactions import Split, Targets, UserSequences
from recsys.data.vocab import Vocab
from recsys.evaluation import evaluate, rank_topk, sample_negatives, target_rank
from recsys.evaluation.negatives import seen_keys
from recsys.evaluation.protocols import distinct


class FixedScores(Recommender):
    """Scores are rows of a fixed (n_users, n_items) matrix; remembers the history it was given."""

    name = "fixed"

    def __init__(self, matrix, as_torch: bool = False):
        self.matrix = np.asarray(matrix, dtype=np.float32)
        self.as_torch = as_torch
        self.histories = []

    def fit(self, train, *, item_features=None):
        return self

    def score(self, users, history):
        self.histories.append(history)
        out = self.matrix[users]
        return torch.from_numpy(out) if self.as_torch else out


def _sequences(rows, n_items):
    lengths = [len(r) for r in rows]
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.array([i for r in rows for i in r], dtype=np.int64)
    return UserSequences(indptr=indptr, items=items, ts=np.arange(len(items)), n_items=n_items)


def _targets(users, items, cands=None):
    users, items = np.array(users, dtype=np.int64), np.array(items, dtype=np.int64)
    if cands is None:
        return Targets(users, items, np.zeros(len(users), dtype=np.int64))
    indptr = np.concatenate([[0], np.cumsum([len(c) for c in cands])]).astype(np.int64)
    flat = np.array([i for c in cands for i in c], dtype=np.int64)
    return Targets(users, items, np.zeros(len(users), dtype=np.int64), indptr, flat)


def _split(train_rows, valid, test, n_known_items, test_rows=None):
    n_items = n_known_items + 2
    train = _sequences(train_rows, n_items)
    return Split(
        name="tiny",
        train=train,
        valid=valid,
        test=test,
        test_history=_sequences(test_rows, n_items) if test_rows else train,
        user_vocab=Vocab.build("user", np.arange(len(train_rows))),
        item_vocab=Vocab.build("item", np.arange(n_known_items)),
    )


# 3 users, items 2..7. Scores rise with the item index except where noted.
TRAIN = [[2, 3], [4], [5, 6, 7]]
SCORES = np.array(
    [
        [9, 9, 1, 8, 2, 3, 3, 0],  # user 0: ties 5/6, seen 2/3 must vanish
        [9, 9, 5, 4, 6, 1, 2, 3],
        [9, 9, 0, 1, 2, 7, 8, 9],
    ],
    dtype=np.float32,
)


def _full_split():
    return _split(TRAIN, _targets([0, 1, 2], [4, 2, 3]), _targets([0], [5]), 6)


def test_full_protocol_hand_computed_ranks_and_metrics():
    res = evaluate(FixedScores(SCORES), _full_split(), ks=(1, 3))
    # user 0 ranks 5, 6, 4, 7 (5/6 tie -> smaller index); target 4 at rank 2.
    # user 1 ranks 2, 3, 7, 6, 5 (4 seen); target 2 at rank 0.
    # user 2 ranks 4, 3, 2; target 3 at rank 1.
    assert res.protocol == "full" and res.stage == "valid" and res.exclude_seen
    assert res.rank.tolist() == [2, 0, 1]
    assert res.n_candidates.tolist() == [4, 5, 3]
    assert res.per_user["hr@1"].tolist() == [0, 1, 0]
    np.testing.assert_allclose(res.per_user["ndcg@3"], [0.5, 1.0, 1 / math.log2(3)])
    assert res.metrics["mrr"] == pytest.approx((1 / 3 + 1 + 1 / 2) / 3)
    assert res.metrics["hr@3"] == pytest.approx(1.0)
    assert res.metrics["coverage@1"] == pytest.approx(3 / 6)  # {5, 2, 4}
    assert res.metrics["coverage@3"] == pytest.approx(6 / 6)
    assert res.metrics["n_targets"] == 3


def test_full_protocol_never_recommends_seen_or_reserved_items():
    rng = np.random.default_rng(0)
    n_known, n_users = 30, 40
    rows = [
        rng.choice(np.arange(2, n_known + 2), size=rng.integers(1, 10), replace=False)
        for _ in range(n_users)
    ]
    target = [rng.choice(np.setdiff1d(np.arange(2, n_known + 2), r)) for r in rows]
    split = _split(rows, _targets(np.arange(n_users), target), _targets([0], [target[0]]), n_known)
    scores = rng.integers(0, 5, size=(n_users, n_known + 2)).astype(np.float32)
    res = evaluate(FixedScores(scores), split, ks=(5, 25), batch_size=7)
    seen = split.train.to_csr()
    top = rank_topk(scores, 25, seen)
    for u in range(n_users):
        listed = set(top[u][top[u] >= 0].tolist())
        assert not listed & set(rows[u].tolist()) and not listed & {0, 1}
    # The protocol's ranks agree with the top-k lists and with any batch size.
    in_top = target_rank(top, target)
    assert np.array_equal(np.where(res.rank < 25, res.rank, -1), in_top)
    again = evaluate(FixedScores(scores), split, ks=(5, 25), batch_size=512)
    assert np.array_equal(again.rank, res.rank) and again.metrics == res.metrics


def test_target_in_history_raises_as_leakage():
    split = _split(TRAIN, _targets([0, 1], [4, 4]), _targets([0], [5]), 6)
    with pytest.raises(ValueError, match="row 1 .*leak"):
        evaluate(FixedScores(SCORES), split)
    with pytest.raises(ValueError, match="leak"):
        evaluate(FixedScores(SCORES), split, protocol="sampled", n_negatives=2)


def test_test_stage_uses_test_history():
    split = _split(
        TRAIN,
        _targets([0], [4]),
        _targets([0, 1], [5, 3]),
        6,
        test_rows=[[2, 3, 4], [4, 2], [5, 6, 7]],
    )
    model = FixedScores(SCORES)
    res = evaluate(model, split, stage="test", ks=(2,))
    assert all(h is split.test_history for h in model.histories)
    # user 0 without 2, 3, 4: ranks 5, 6, 7 -> target 5 at 0; user 1 without 4, 2: 3 first.
    assert res.rank.tolist() == [0, 0]


def test_bad_scores_and_arguments_raise():
    with pytest.raises(ValueError, match="shape"):
        evaluate(FixedScores(SCORES[:, :5]), _full_split())
    nan = SCORES.copy()
    nan[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate(FixedScores(nan), _full_split())
    with pytest.raises(ValueError, match="protocol"):
        evaluate(FixedScores(SCORES), _full_split(), protocol="popular")
    with pytest.raises(ValueError, match="stage"):
        evaluate(FixedScores(SCORES), _full_split(), stage="train")


def test_torch_scores_and_max_users_subset():
    split = _full_split()
    res = evaluate(FixedScores(SCORES, as_torch=True), split, max_users=2, seed=3, ks=(3,))
    again = evaluate(FixedScores(SCORES), split, max_users=2, seed=3, ks=(3,))
    assert len(res.target_index) == 2 and np.array_equal(res.target_index, again.target_index)
    full = evaluate(FixedScores(SCORES), split, ks=(3,))
    assert np.array_equal(res.rank, full.rank[res.target_index])
    assert len(res.per_user["ndcg@3"]) == 2


def _random_history(rng, n_users, n_items, max_len):
    rows = [
        rng.choice(np.arange(2, n_items), size=rng.integers(1, max_len), replace=False)
        for _ in range(n_users)
    ]
    return _sequences(rows, n_items), rows


def test_sample_negatives_are_unseen_distinct_and_seeded():
    rng = np.random.default_rng(1)
    history, rows = _random_history(rng, 50, 40, 25)
    users = np.repeat(np.arange(50), 2)
    target = np.array([rng.choice(np.setdiff1d(np.arange(2, 40), rows[u])) for u in users])
    position = np.arange(100)
    kw = dict(history=history, n_negatives=12, seed=7)
    neg = sample_negatives(users=users, target=target, position=position, **kw)
    for u, t, row in zip(users, target, neg, strict=True):
        assert len(set(row.tolist())) == 12 and row.min() >= 2 and row.max() < 40
        assert not set(row.tolist()) & (set(rows[u].tolist()) | {int(t)})
    # Negatives depend only on (seed, position): subsets and reorders reproduce them.
    sub = np.array([97, 3, 40])
    part = sample_negatives(users=users[sub], target=target[sub], position=sub, **kw)
    assert np.array_equal(part, neg[sub])
    other = sample_negatives(
        users=users, target=target, position=position, history=history, n_negatives=12, seed=8
    )
    assert not np.array_equal(other, neg)


def test_sample_negatives_exhaustive_and_too_few():
    # User 0 has seen 2..7 of 2..11 and the target is 8: exactly 9, 10, 11 are left.
    history = _sequences([[2, 3, 4, 5, 6, 7]], 12)
    kw = dict(users=np.array([0]), target=np.array([8]), position=np.array([0]), history=history)
    neg = sample_negatives(n_negatives=3, seed=0, **kw)
    assert sorted(neg[0].tolist()) == [9, 10, 11]
    with pytest.raises(ValueError, match="fewer than 4"):
        sample_negatives(n_negatives=4, seed=0, **kw)


def test_sampled_protocol_is_labelled_and_matches_direct_ranking():
    rng = np.random.default_rng(2)
    n_items, n_users = 60, 30
    history, rows = _random_history(rng, n_users, n_items, 20)
    target = [rng.choice(np.setdiff1d(np.arange(2, n_items), r)) for r in rows]
    split = _split(
        rows, _targets(np.arange(n_users), target), _targets([0], [target[0]]), n_items - 2
    )
    scores = rng.normal(size=(n_users, n_items)).astype(np.float32)
    res = evaluate(
        FixedScores(scores),
        split,
        protocol="sampled",
        n_negatives=10,
        ks=(1, 5),
        seed=4,
        batch_size=8,
    )
    assert res.protocol == "sampled-10"
    assert all(name.startswith("sampled_") for name in res.per_user)
    assert "sampled_ndcg@5" in res.metrics and "ndcg@5" not in res.metrics
    assert not any(name.startswith("coverage") for name in res.metrics)
    assert (res.n_candidates == 11).all()
    neg = sample_negatives(
        users=np.arange(n_users),
        target=np.array(target),
        position=np.arange(n_users),
        history=split.train,
        n_negatives=10,
        seed=4,
        keys=seen_keys(split.train),
    )
    t_score = scores[np.arange(n_users), target]
    expected = (scores[np.arange(n_users)[:, None], neg] > t_score[:, None]).sum(axis=1)
    assert res.rank.tolist() == expected.tolist()
    again = evaluate(
        FixedScores(scores),
        split,
        protocol="sampled",
        n_negatives=10,
        ks=(1, 5),
        seed=4,
        batch_size=500,
    )
    assert again.metrics == res.metrics


LIVE_TRAIN = [[2, 3], [4], [5, 6, 7]]
LIVE_SCORES = np.array(
    [
        [0, 0, 9, 8, 7, 6, 5, 4],
        [0, 0, 1, 2, 3, 4, 5, 6],
        [0, 0, 6, 5, 4, 3, 2, 1],
    ],
    dtype=np.float32,
)


def _live_split(cands, users=(0, 0, 1, 2), items=(3, 4, 7, 6)):
    valid = _targets(list(users), list(items), cands)
    return _split(LIVE_TRAIN, valid, valid, 6)


def test_live_protocol_ranks_only_candidates_and_splits_repeat_new():
    # Target rows: (u0, 3) repeat among {3, 4, 5}; (u0, 4) new among {2, 4}; (u1, 7) new among
    # {7, 6, 4}; (u2, 6) repeat among {6, 2}.
    split = _live_split([[5, 3, 4, 3], [2, 4], [7, 6, 4], [6, 2]])  # 3 listed twice counts once
    res = evaluate(FixedScores(LIVE_SCORES), split, protocol="live", ks=(1, 2))
    assert res.protocol == "live" and not res.exclude_seen
    assert res.is_repeat.tolist() == [True, False, False, True]
    assert res.n_candidates.tolist() == [3, 2, 3, 2]
    assert res.rank.tolist() == [0, 1, 0, 1]  # seen item 2 kept for user 0 and 2
    m = res.metrics
    assert m["n_repeat"] == 2 and m["n_new"] == 2 and m["n_targets"] == 4
    assert m["hr@1"] == pytest.approx(0.5)
    assert m["repeat/hr@1"] == pytest.approx(0.5) and m["new/hr@1"] == pytest.approx(0.5)
    assert m["repeat/ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert m["new/mrr"] == pytest.approx((0.5 + 1) / 2)
    # Top-1 lists: 3, 2, 7, 2 -> three distinct items of six; top-2 adds 4 and 6.
    assert m["coverage@1"] == pytest.approx(3 / 6)
    assert m["coverage@2"] == pytest.approx(5 / 6)


def test_live_protocol_guards():
    cands = [[5, 3, 4], [2, 4], [7, 6, 4], [6, 2]]
    with pytest.raises(ValueError, match="row 2 item 7 is not in its own candidate set"):
        evaluate(FixedScores(LIVE_SCORES), _live_split([[5, 3], [4], [6], [6]]), protocol="live")
    with pytest.raises(ValueError, match="no candidate sets"):
        evaluate(FixedScores(LIVE_SCORES), _full_split(), protocol="live")
    with pytest.raises(ValueError, match="leak"):
        evaluate(FixedScores(LIVE_SCORES), _live_split(cands), protocol="live", exclude_seen=True)
    new_only = _live_split([[2, 4], [7, 6, 4]], users=(0, 1), items=(4, 7))
    res = evaluate(FixedScores(LIVE_SCORES), new_only, protocol="live", exclude_seen=True, ks=(1,))
    assert res.rank.tolist() == [0, 0]  # seen item 2 removed for user 0
    assert res.metrics["n_repeat"] == 0 and math.isnan(res.metrics["repeat/hr@1"])


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_live_protocol_matches_loop_reference(exclude_seen):
    rng = np.random.default_rng(6)
    n_items, n_users, n_targets = 40, 12, 60
    history, rows = _random_history(rng, n_users, n_items, 8)
    users = rng.integers(0, n_users, size=n_targets)
    pool = [
        np.setdiff1d(np.arange(2, n_items), rows[u]) if exclude_seen else np.arange(2, n_items)
        for u in users
    ]
    items = np.array([rng.choice(p) for p in pool])
    cands = [np.append(rng.integers(0, n_items, size=rng.integers(0, 15)), t) for t in items]
    valid = _targets(users, items, cands)
    split = _split(rows, valid, valid, n_items - 2)
    scores = rng.integers(0, 6, size=(n_users, n_items)).astype(np.float32)  # many ties
    res = evaluate(
        FixedScores(scores),
        split,
        protocol="live",
        ks=(3,),
        batch_size=9,
        exclude_seen=exclude_seen,
    )
    listed = set()
    for i, (u, t) in enumerate(zip(users, items, strict=True)):
        allowed = {int(c) for c in cands[i] if c >= 2}
        allowed -= set(rows[u].tolist()) if exclude_seen else set()
        order = sorted(allowed, key=lambda j, u=u: (-scores[u, j], j))
        assert res.rank[i] == order.index(t) and res.n_candidates[i] == len(order)
        assert res.is_repeat[i] == (t in rows[u])
        listed |= set(order[:3])
    assert res.metrics["coverage@3"] == pytest.approx(len(listed) / (n_items - 2))


def test_rank_topk_accepts_exclusion_rows_aligned_with_scores():
    excl = sp.csr_matrix(([1.0], ([1], [2])), shape=(2, 8))
    top = rank_topk(LIVE_SCORES[:2], 2, excl)
    assert top.tolist() == [[2, 3], [7, 6]]


def test_distinct_equals_unique_on_ordered_and_unordered_keys():
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 50, 1000):
        keys = rng.integers(0, 40, size=n)
        for k in (keys, np.sort(keys)):
            np.testing.assert_array_equal(distinct(k), np.unique(k))
