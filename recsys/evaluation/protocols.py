"""Evaluate any ``Recommender`` on a ``Split`` under one of three ranking protocols.

* ``full``: the target is ranked against the whole catalogue. Padding/unknown columns and the
  user's seen items are removed; a target the user has already seen raises (it would mean the
  split leaked the target into the history). Reports ``hr@k``, ``ndcg@k``, ``mrr``,
  ``coverage@k``.
* ``sampled`` (the SASRec protocol): the target is ranked against ``n_negatives`` items drawn
  uniformly from the items the user has not interacted with. Cheaper but known to overstate
  quality and even to reorder models, so its label is ``sampled-<n>`` and its metric names
  start with ``sampled_`` (``sampled_ndcg@10``): sampled numbers cannot pass for full ones.
* ``live`` (availability-aware): each target carries its candidate set (``Targets.cand_*``,
  e.g. the rooms live at that moment) and is ranked only among those. Seen items are kept by
  default because returning to a room already watched is the norm on live platforms; metrics
  are also split into ``repeat/`` (target already in the history) and ``new/`` targets.

Histories: stage ``valid`` ranks ``split.valid`` with ``split.train`` as history; stage
``test`` ranks ``split.test`` with ``split.test_history``. Scores are requested in batches of
users, so no (n_users, n_items) matrix is ever built. Equal scores rank the smaller item index
first, so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.core import Recommender
from recsys.data.interactions import Split, Targets, UserSequences
from recsys.data.vocab import N_RESERVED
from recsys.evaluation.metrics import as_numpy, metrics_from_rank
from recsys.evaluation.negatives import is_seen, sample_negatives, seen_keys
from recsys.evaluation.ranking import (
    MASKED,
    csr_rows,
    mask_entries,
    n_rankable,
    ragged_ranks,
    ragged_topk,
    rank_topk,
    score_keys,
    target_ranks,
    topk_from_keys,
)

PROTOCOLS = ("full", "sampled", "live")
STAGES = ("valid", "test")

__all__ = ["PROTOCOLS", "STAGES", "EvalResult", "evaluate", "rank_topk"]


@dataclass(frozen=True)
class EvalResult:
    """Mean metrics plus the per-target values behind them (for paired significance tests).

    ``per_user[name][i]``, ``rank[i]``, ``n_candidates[i]`` and ``is_repeat[i]`` describe the
    target at row ``target_index[i]`` of the stage's ``Targets``. ``rank`` is 0-based among the
    ``n_candidates`` items the target competed with (itself included).
    """

    protocol: str  # "full", "sampled-<n>" or "live"
    stage: str
    metrics: dict[str, float | int]  # means; counts (n_targets, n_repeat, n_new) are ints
    per_user: dict[str, np.ndarray]
    target_index: np.ndarray  # (T,) int64
    rank: np.ndarray  # (T,) int64
    n_candidates: np.ndarray  # (T,) int64
    is_repeat: np.ndarray  # (T,) bool: target item already in the user's history
    exclude_seen: bool

    def summary(self) -> str:
        """One line: protocol, stage and every metric."""
        parts = [
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in self.metrics.items()
        ]
        return f"[{self.protocol} {self.stage}] " + " ".join(parts)


@dataclass(frozen=True)
class _Batch:
    position: np.ndarray  # (B,) rows of the stage's Targets
    users: np.ndarray  # (B,)
    items: np.ndarray  # (B,)


def _stage_data(split: Split, stage: str) -> tuple[UserSequences, Targets]:
    if stage == "valid":
        return split.train, split.valid
    if stage == "test":
        return split.test_history, split.test
    raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")


def _select(targets: Targets, max_users: int | None, seed: int) -> np.ndarray:
    """Positions of the targets to evaluate: all, or all targets of a seeded sample of users."""
    if max_users is None:
        return np.arange(len(targets), dtype=np.int64)
    users = np.unique(targets.user)
    if max_users >= len(users):
        return np.arange(len(targets), dtype=np.int64)
    chosen = np.random.default_rng(seed).choice(users, size=max_users, replace=False)
    return np.flatnonzero(np.isin(targets.user, chosen)).astype(np.int64)


def _check_targets(name: str, targets: Targets, history: UserSequences, pos: np.ndarray) -> None:
    users, items = targets.user[pos], targets.item[pos]
    bad = (items < N_RESERVED) | (items >= history.n_items)
    if bad.any():
        i = int(pos[np.flatnonzero(bad)[0]])
        raise ValueError(
            f"{name} targets: row {i} item {targets.item[i]} is not a real item index "
            f"({N_RESERVED}..{history.n_items - 1})"
        )
    bad = (users < 0) | (users >= history.n_users)
    if bad.any():
        i = int(pos[np.flatnonzero(bad)[0]])
        raise ValueError(f"{name} targets: row {i} user {targets.user[i]} has no history row")


def _check_no_leak(name: str, targets: Targets, pos: np.ndarray, is_repeat: np.ndarray) -> None:
    if is_repeat.any():
        i = int(pos[np.flatnonzero(is_repeat)[0]])
        raise ValueError(
            f"{name} targets: row {i} (user {targets.user[i]}, item {targets.item[i]}) is already "
            f"in the user's history, which would leak the target; {int(is_repeat.sum())} such "
            "targets. Use exclude_seen=False only where repeat consumption is intended."
        )


def _check_candidates(name: str, targets: Targets, pos: np.ndarray, n_items: int) -> None:
    if not targets.has_candidates:
        raise ValueError(f"live protocol: {name} targets carry no candidate sets (cand_indptr)")
    rows, items = csr_rows(targets.cand_indptr, targets.cand_items, targets.sets_of(pos))
    if len(items) and (items.min() < 0 or items.max() >= n_items):
        j = int(np.flatnonzero((items < 0) | (items >= n_items))[0])
        raise ValueError(f"{name} candidates: target row {pos[rows[j]]} lists item {items[j]}")
    found = np.bincount(rows[items == targets.item[pos][rows]], minlength=len(pos)) > 0
    if not found.all():
        i = int(pos[np.flatnonzero(~found)[0]])
        raise ValueError(
            f"{name} targets: row {i} item {targets.item[i]} is not in its own candidate set"
        )


def _batches(targets: Targets, pos: np.ndarray, batch_size: int):
    for start in range(0, len(pos), batch_size):
        p = pos[start : start + batch_size]
        yield _Batch(position=p, users=targets.user[p], items=targets.item[p])


def _scores(model: Recommender, batch: _Batch, history: UserSequences) -> np.ndarray:
    scores = as_numpy(model.score(batch.users, history), dtype=np.float32)
    expected = (len(batch.users), history.n_items)
    if scores.shape != expected:
        raise ValueError(f"{model.name}.score returned shape {scores.shape}, expected {expected}")
    return scores


def _rank_full(scores, batch, history, exclude_seen, k_max):
    """Catalogue-wide ranking of one batch: (rank, n_candidates, top-k)."""
    keys = score_keys(scores)
    if exclude_seen:
        rows, items = csr_rows(history.indptr, history.items, batch.users)
        mask_entries(keys, rows, items)
    return target_ranks(keys, batch.items), n_rankable(keys), topk_from_keys(keys, k_max)


def distinct(keys: np.ndarray) -> np.ndarray:
    """``np.unique(keys)``; in one pass when the keys are already in order (candidate sets are
    stored sorted, so a batch's (row, item) keys usually are), else by sorting."""
    if len(keys) < 2 or not (keys[1:] >= keys[:-1]).all():
        return np.unique(keys)
    keep = np.empty(len(keys), dtype=bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


def _rank_live(scores, batch, targets, seen, exclude_seen, k_max):
    """Ranking of one batch among each target's own candidates: (rank, n_candidates, top-k)."""
    n_items = scores.shape[1]
    sets = targets.sets_of(batch.position)
    rows, items = csr_rows(targets.cand_indptr, targets.cand_items, sets)
    pairs = distinct(rows * n_items + items)  # a room listed twice competes once
    rows, items = pairs // n_items, pairs % n_items
    keys = score_keys(scores[rows, items][None, :], items=items[None, :])[0]
    if exclude_seen:
        keys[is_seen(seen, n_items, batch.users[rows], items)] = MASKED
    rank, count = ragged_ranks(rows, items, keys, batch.items, len(batch.users))
    return rank, count, ragged_topk(rows, items, keys, len(batch.users), k_max)


def _rank_sampled(scores, batch, history, n_negatives, seed, seen):
    """Sampled ranking of one batch: (rank, n_candidates)."""
    negatives = sample_negatives(
        users=batch.users,
        target=batch.items,
        position=batch.position,
        history=history,
        n_negatives=n_negatives,
        seed=seed,
        keys=seen,
    )
    cand = np.concatenate([batch.items[:, None], negatives], axis=1)  # (B, 1 + n_negatives)
    keys = score_keys(np.take_along_axis(scores, cand, axis=1), items=cand)
    rank = (keys[:, 1:] > keys[:, :1]).sum(axis=1)
    return rank, np.full(len(rank), cand.shape[1], dtype=np.int64)


def _coverage(first_pos: np.ndarray, ks: Sequence[int], n_known: int) -> dict[str, float]:
    return {f"coverage@{k}": float((first_pos < k).sum() / n_known) for k in ks}


def _means(per_user: dict[str, np.ndarray], mask: np.ndarray, prefix: str) -> dict[str, float]:
    if not mask.any():
        return {f"{prefix}{name}": float("nan") for name in per_user}
    return {f"{prefix}{name}": float(v[mask].mean()) for name, v in per_user.items()}


def _check_args(protocol: str, ks: Sequence[int], batch_size: int, n_negatives: int) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if len(ks) == 0 or min(ks) < 1:
        raise ValueError(f"ks must be positive cut-offs, got {tuple(ks)}")
    if batch_size < 1 or n_negatives < 1:
        raise ValueError(f"batch_size and n_negatives must be >= 1 ({batch_size}, {n_negatives})")


@dataclass(frozen=True)
class _Plan:
    protocol: str
    stage: str
    ks: tuple[int, ...]  # sorted, unique
    batch_size: int
    n_negatives: int
    seed: int
    exclude_seen: bool


def evaluate(
    model: Recommender,
    split: Split,
    *,
    protocol: str = "full",
    stage: str = "valid",
    ks: Sequence[int] = (10, 20, 100),
    batch_size: int = 512,
    n_negatives: int = 100,
    seed: int = 0,
    max_users: int | None = None,
    exclude_seen: bool | None = None,
) -> EvalResult:
    """Rank each target of ``stage`` with ``model`` under ``protocol`` and score the ranking.

    ``exclude_seen`` defaults to True for ``full``/``sampled`` and False for ``live``; when
    True, a target already in the user's history raises. ``max_users`` evaluates every target
    of a ``seed``-chosen sample of users (the same sample for every model). ``seed`` also fixes
    the sampled negatives, which depend only on (seed, target row).
    """
    _check_args(protocol, ks, batch_size, n_negatives)
    plan = _Plan(
        protocol=protocol,
        stage=stage,
        ks=tuple(sorted({int(k) for k in ks})),
        batch_size=batch_size,
        n_negatives=n_negatives,
        seed=seed,
        exclude_seen=protocol != "live" if exclude_seen is None else exclude_seen,
    )
    history, targets = _stage_data(split, stage)
    pos = _select(targets, max_users, seed)
    if len(pos) == 0:
        raise ValueError(f"{split.name}: the {stage} stage has no targets to evaluate")
    _check_targets(stage, targets, history, pos)
    seen = seen_keys(history)
    is_repeat = is_seen(seen, history.n_items, targets.user[pos], targets.item[pos])
    if plan.exclude_seen:
        _check_no_leak(stage, targets, pos, is_repeat)
    if protocol == "live":
        _check_candidates(stage, targets, pos, history.n_items)
    ranked = _rank_all(model, history, targets, pos, seen, plan)
    return _result(plan, ranked, pos, is_repeat, split.n_known_items)


def _rank_all(model, history, targets, pos, seen, plan: _Plan):
    """Rank and candidate count of every selected target, and each item's best top-k slot."""
    rank = np.empty(len(pos), dtype=np.int64)
    n_cand = np.empty(len(pos), dtype=np.int64)
    first_pos = np.full(history.n_items, plan.ks[-1], dtype=np.int64)
    start = 0
    for batch in _batches(targets, pos, plan.batch_size):
        scores = _scores(model, batch, history)
        out = slice(start, start + len(batch.users))
        start = out.stop
        if plan.protocol == "sampled":
            rank[out], n_cand[out] = _rank_sampled(
                scores, batch, history, plan.n_negatives, plan.seed, seen
            )
            continue
        if plan.protocol == "live":
            ranked = _rank_live(scores, batch, targets, seen, plan.exclude_seen, plan.ks[-1])
        else:
            ranked = _rank_full(scores, batch, history, plan.exclude_seen, plan.ks[-1])
        rank[out], n_cand[out], top = ranked
        valid = top >= 0
        slots = np.broadcast_to(np.arange(top.shape[1]), top.shape)
        np.minimum.at(first_pos, top[valid], slots[valid])
    return rank, n_cand, first_pos


def _result(plan: _Plan, ranked, pos, is_repeat, n_known: int) -> EvalResult:
    rank, n_cand, first_pos = ranked
    sampled = plan.protocol == "sampled"
    per_user = metrics_from_rank(rank, plan.ks, prefix="sampled_" if sampled else "")
    metrics = _means(per_user, np.ones(len(rank), dtype=bool), "")
    if not sampled:
        metrics.update(_coverage(first_pos, plan.ks, n_known))
    if plan.protocol == "live":
        metrics.update(_means(per_user, is_repeat, "repeat/"))
        metrics.update(_means(per_user, ~is_repeat, "new/"))
        metrics.update(n_repeat=int(is_repeat.sum()), n_new=int((~is_repeat).sum()))
    metrics["n_targets"] = len(rank)
    return EvalResult(
        protocol=f"sampled-{plan.n_negatives}" if sampled else plan.protocol,
        stage=plan.stage,
        metrics=metrics,
        per_user=per_user,
        target_index=pos,
        rank=rank,
        n_candidates=n_cand,
        is_repeat=is_repeat,
        exclude_seen=plan.exclude_seen,
    )
