"""The quality harness: tuning picks the validation optimum, refinement and the paired tests."""

from __future__ import annotations

import logging
from functools import partial

import numpy as np

from recsys.baselines.registry import make_baseline
from recsys.data.interactions import Interactions
from recsys.data.splits import leave_one_out
from recsys.data.vocab import Vocab
from recsys.evaluation.selection import (
    Candidate,
    QualitySettings,
    markdown_table,
    neighbours,
    run_quality,
)


def _split(seed: int = 0):
    """Two user groups, each reading its own half of the catalogue in a fixed cyclic order."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(200):
        group = u % 2
        start = rng.integers(0, 20)
        seq = [group * 20 + (start + j) % 20 for j in range(8)]
        users += [u] * len(seq)
        items += seq
        ts += list(range(len(seq)))
    uv, iv = Vocab.build("user", np.array(users)), Vocab.build("item", np.array(items))
    inter = Interactions(
        uv.encode(np.array(users)), iv.encode(np.array(items)), np.array(ts), uv, iv, name="groups"
    )
    return leave_one_out(inter)


def test_neighbours_halve_and_double_numeric_values_only():
    got = neighbours({"k": 10, "shrink": 4.0, "flag": True, "name": "x", "zero": 0.0})
    assert {"k": 5, "shrink": 4.0, "flag": True, "name": "x", "zero": 0.0} in got
    assert {"k": 20, "shrink": 4.0, "flag": True, "name": "x", "zero": 0.0} in got
    assert {"k": 10, "shrink": 8.0, "flag": True, "name": "x", "zero": 0.0} in got
    assert len(got) == 4


def test_run_quality_tunes_refines_and_compares(caplog):
    split = _split()
    knn = Candidate(
        "item_knn",
        partial(make_baseline, "item_knn"),
        ({"k_neighbours": 5, "shrink": 0.0}, {"k_neighbours": 40, "shrink": 0.0}),
        neighbourhood=True,
        max_refine_rounds=1,
    )
    pop = Candidate("popularity", partial(make_baseline, "popularity"))
    with caplog.at_level(logging.INFO, logger="recsys.evaluation.selection"):
        results = run_quality(split, [pop, knn], QualitySettings(ks=(5, 10)))
    by_name = {r.name: r for r in results}
    knn_res, pop_res = by_name["item_knn"], by_name["popularity"]
    # Planted group structure: neighbours beat popularity, significantly.
    assert knn_res.test["ndcg@10"] > pop_res.test["ndcg@10"] + 0.1
    assert not knn_res.significance and pop_res.significance["best"] == "item_knn"
    assert pop_res.significance["p_value"] < 1e-3
    # The chosen point is the best validation score among every point tried.
    tried = knn_res.grid
    assert any(r.get("refine") for r in tried)
    best_valid = max(r["ndcg@10"] for r in tried)
    assert knn_res.valid["ndcg@10"] == best_valid
    assert len(knn_res.neighbourhood) == 2  # k halved / doubled (shrink 0 is not scaled)
    table = markdown_table(results, ["hr@10", "ndcg@10"])
    assert table.count("\n") == 3 and "best" in table
    # One line per model at INFO, however many settings were tried (each one is at DEBUG).
    chose = [r.getMessage() for r in caplog.records if "tried, chose" in r.getMessage()]
    assert len(chose) == 2 and chose[1].startswith(f"item_knn: {len(tried)} setting(s) tried")
    assert not [r for r in caplog.records if r.levelno == logging.INFO and " valid {" in
                r.getMessage()]  # fmt: skip


def test_folding_validation_trains_on_unsampled_users_and_keeps_the_sample():
    from recsys.data.splits import fold_unsampled_validation
    from recsys.evaluation.protocols import _select

    split = _split()
    n = len(np.unique(split.valid.user))
    folded = fold_unsampled_validation(split, n_users=5, seed=3)
    kept = set(folded.valid.user.tolist())
    assert len(kept) == 5
    # The kept users are exactly those evaluate(max_users=5, seed=3) would pick.
    assert kept == set(split.valid.user[_select(split.valid, 5, 3)].tolist())
    lengths, before = folded.train.lengths, split.train.lengths
    for u in np.unique(split.valid.user):
        grew = lengths[u] - before[u]
        assert grew == (0 if u in kept else 1)
        if u not in kept:  # the validation event is appended last
            last = folded.train.items[folded.train.indptr[u + 1] - 1]
            assert last == split.valid.item[split.valid.user == u][0]
    np.testing.assert_array_equal(folded.test_history.items, split.test_history.items)
    assert folded.meta["folded_validation"] == n - 5
    assert fold_unsampled_validation(split, n_users=n, seed=3) is split
