"""Membership inference against a two-tower checkpoint: can an attacker tell forgotten users
from people the model never trained on?

The attack (score threshold): for a viewer and the products they really interacted with (a
*probe*, which the auditor keeps from before the erasure, outside the audited tree), the score is
the mean percentile of those products among every product, under the model's query for that
viewer as the model now sees them. Members are the forgotten users; non-members are other
viewers scored as the model scores anyone it never saw (the unknown row, no history), which is
all a model that never trained on them could do. The advantage is the best threshold's
TPR - FPR (0: indistinguishable, 1: perfectly told apart).

Before the erasure members have their own embedding rows and history: a high advantage. After
it their ids are gone from the vocabulary and their events from the tables, so the model answers
them as a stranger too, and what is left of the advantage comes from differences between the
two groups' products, plus what the shared weights (towers, item vectors) learned from the
members, which only a retrain without them removes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.recommenders.restore import restore

UNKNOWN = 1  # vocabulary code of a user the model does not know


@dataclass(frozen=True)
class Membership:
    advantage: float  # max over thresholds of TPR - FPR
    auc: float  # P(member score > non-member score)
    members: int
    nonmembers: int
    member_mean: float  # mean percentile of members' true products
    nonmember_mean: float


def _percentiles(model, codes: np.ndarray, ts: np.ndarray, truth: list[np.ndarray]) -> np.ndarray:
    """Per viewer, the mean percentile (1 = top) of their true product codes among all."""
    n = model.n_entities()
    candidates = np.arange(2, n, dtype=np.int64)
    out = np.empty(len(codes))
    for lo in range(0, len(codes), 256):
        part = slice(lo, lo + 256)
        scores = model.request_scores(codes[part], ts[part], candidates)  # (B, n - 2)
        for i, s in enumerate(scores):
            true = truth[lo + i] - 2
            rank = (s[None, :] < s[true][:, None]).sum(axis=1) / max(1, len(s) - 1)
            out[lo + i] = float(rank.mean())
    return out


def advantage(member: np.ndarray, nonmember: np.ndarray) -> tuple[float, float]:
    """(max TPR - FPR over thresholds, AUC) of telling members (higher scores) apart."""
    values = np.unique(np.concatenate([member, nonmember]))
    tpr = (member[None, :] >= values[:, None]).mean(axis=1)
    fpr = (nonmember[None, :] >= values[:, None]).mean(axis=1)
    diff = member[:, None] - nonmember[None, :]
    auc = float((diff > 0).mean() + 0.5 * (diff == 0).mean())
    return float(np.max(tpr - fpr)), auc


def membership(checkpoint: str | Path, probe: pd.DataFrame, members, nonmembers, *,
               cache_dir: str | None = None) -> Membership:  # fmt: skip
    """The attack of the module notes on ``checkpoint``; ``probe`` holds (user_id, product_id,
    ts) rows of both groups' true interactions."""
    restored = restore(checkpoint, cache_dir=cache_dir)
    model = restored.recommender.for_head("product")
    vocabs = restored.recommender.context.vocabs
    groups = {}
    for name, users, stranger in (("members", members, False), ("nonmembers", nonmembers, True)):
        rows = probe[probe["user_id"].isin(np.asarray(users))]
        rows = rows.assign(code=vocabs.product.encode(rows["product_id"].to_numpy(np.int64)))
        rows = rows[rows["code"] >= 2]
        per = rows.groupby("user_id")
        ids = np.array(list(per.groups), dtype=np.int64)
        codes = np.full(len(ids), UNKNOWN) if stranger else vocabs.user.encode(ids)
        ts = per["ts"].min().reindex(ids).to_numpy(np.int64)
        truth = [g["code"].to_numpy(np.int64) for _, g in per]
        groups[name] = _percentiles(model, np.asarray(codes, np.int64), ts, truth)
    adv, auc = advantage(groups["members"], groups["nonmembers"])
    return Membership(round(adv, 4), round(auc, 4), len(groups["members"]),
                      len(groups["nonmembers"]), round(float(groups["members"].mean()), 4),
                      round(float(groups["nonmembers"].mean()), 4))  # fmt: skip
