"""What a benchmark split left out of evaluation and why, in counts, before anything is scored.

A leave-one-out split keeps users with fewer than ``min_len`` events for training only; the
full protocol drops targets the user has already seen (they cannot be ranked once seen items
are removed); targets whose item never occurs in the history they are scored from stay in (a
model can only rank them by chance or popularity, which is part of the task), but are counted.
A stage left with no targets stops the run with that account instead of a metric over nothing.
"""

from __future__ import annotations

import numpy as np

from recsys.data.interactions import Split, Targets, UserSequences


class NothingToEvaluate(SystemExit):
    """The split has no validation or no test targets; the message says what was dropped."""


def _unseen(history: UserSequences, targets: Targets) -> int:
    counts = np.bincount(history.items, minlength=history.n_items)
    return int(np.count_nonzero(counts[targets.item] == 0))


def split_notes(split: Split) -> list[str]:
    """One line per thing left out or worth knowing, with counts."""
    meta, notes = split.meta, []
    if meta.get("n_train_only_users"):
        notes.append(
            f"{meta['n_train_only_users']} users with fewer than {meta.get('min_len', 3)} "
            "events are kept for training only: they have no validation and test event"
        )
    for stage, key in (("validation", "valid_targets_in_history"),
                       ("test", "test_targets_in_history")):  # fmt: skip
        if meta.get("targets") == "new items only" and meta.get(key):
            notes.append(
                f"{meta[key]} {stage} targets dropped: the user had already interacted with "
                "the item, and full ranking removes seen items"
            )
    for stage, history, targets in (("validation", split.train, split.valid),
                                    ("test", split.test_history, split.test)):  # fmt: skip
        unseen = _unseen(history, targets) if len(targets) else 0
        if unseen:
            notes.append(
                f"{unseen} of {len(targets)} {stage} targets are items never seen in the "
                "history they are scored from (kept: models can rank them only by chance)"
            )
    return notes


def check_stages(split: Split, notes: list[str]) -> None:
    """Stop with the notes when validation or test has no target left."""
    stages = (("validation", split.valid), ("test", split.test))
    empty = [stage for stage, targets in stages if not len(targets)]
    if empty:
        account = "; ".join(notes) or "the data has no user with enough events"
        raise NothingToEvaluate(
            f"{split.name}: no {' and no '.join(empty)} targets to evaluate "
            f"({len(split.train.items)} training events from "
            f"{int(np.count_nonzero(split.train.lengths))} users): "
            f"{account}"
        )
