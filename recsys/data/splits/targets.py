"""Splits derived from a split: new-item targets only, folded validation, per protocol."""

from __future__ import annotations

import dataclasses

import numpy as np

from recsys.data.interactions import Split
from recsys.data.splits.sequences import pair_in_history


def new_item_targets(split: Split) -> Split:
    """The split with only targets the user has not interacted with before.

    Full-catalogue ranking removes seen items, so a repeat target could never be ranked; on
    repeat-heavy live data the full protocol is therefore the next-new-item task.
    """
    valid_new = ~pair_in_history(split.train, split.valid.user, split.valid.item)
    test_new = ~pair_in_history(split.test_history, split.test.user, split.test.item)
    meta = {
        **split.meta,
        "targets": "new items only",
        "n_valid_targets": int(valid_new.sum()),
        "n_test_targets": int(test_new.sum()),
        "exclude_seen": True,
    }
    return dataclasses.replace(
        split,
        valid=split.valid.subset(valid_new),
        test=split.test.subset(test_new),
        meta=meta,
    )


def fold_unsampled_validation(split: Split, n_users: int, seed: int) -> Split:
    """Validation on a seeded sample of ``n_users`` users; every other user's validation
    events join training (the protocol of Klenitskiy & Vasilev, RecSys 2023: leave-one-out
    with validation on 10,000 users). The sample is the one ``evaluate(max_users=n_users,
    seed=seed)`` draws, and test histories are unchanged (train plus all validation events)."""
    if split.valid.has_candidates:
        raise ValueError(f"{split.name}: folding validation needs a leave-one-out split")
    users = np.unique(split.valid.user)
    if n_users >= len(users):
        return split
    chosen = np.random.default_rng(seed).choice(users, size=n_users, replace=False)
    keep = np.isin(split.valid.user, chosen)
    fold = split.valid.subset(~keep)
    meta = {**split.meta, "validation_users": int(n_users), "folded_validation": int((~keep).sum())}
    return dataclasses.replace(
        split,
        train=split.train.append(fold.user, fold.item, fold.ts),
        valid=split.valid.subset(keep),
        meta=meta,
    )


def for_protocol(split: Split, protocol: str) -> Split:
    """The split as a protocol ranks it: outside ``live``, repeat targets cannot be ranked."""
    if protocol != "live" and split.valid.has_candidates:
        return new_item_targets(split)
    return split
