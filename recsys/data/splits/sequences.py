"""Train / validation / test splits of ``Interactions``.

Two protocols, both returning a ``Split`` whose validation targets are scored with ``train`` as
history and whose test targets are scored with ``test_history``:

* ``leave_one_out`` (SASRec / BERT4Rec): per user, in chronological order, the last event is the
  test target, the one before it the validation target, the rest is train. Users with fewer than
  ``min_len`` events stay entirely in train and are not evaluated. ``test_history`` is train plus
  the validation event.
* ``temporal_split`` (global time cut-offs ``valid_ts < test_ts``): train is every event before
  ``valid_ts``. Each user gets at most one validation target, the first event in
  ``[valid_ts, test_ts)`` whose item is new to the user (not in train), and at most one test
  target, the first event at or after ``test_ts`` whose item is in neither train nor the user's
  validation-window events. ``test_history`` is train plus every validation-window event.

Leakage: history never contains the target event itself nor anything after it. With one event per
(user, item) pair (the Amazon and MovieLens files) no target item can appear in the history that
scores it. Data with repeat consumption behaves differently per protocol: the temporal split only
picks new items as targets, so removing seen items at evaluation never removes a target; leave-one-
out keeps the last event whatever it is and counts the targets whose item is already in the
history (``meta['valid_targets_in_history']`` / ``['test_targets_in_history']``). Scoring targets
that repeat history items is the live protocol's job (``recsys.data.live``), which sets
``meta['exclude_seen'] = False``.
"""

from __future__ import annotations

import numpy as np

from recsys.data.interactions import (
    Interactions,
    ItemFeatures,
    Split,
    Targets,
    UserSequences,
)


def _keep(seqs: UserSequences, keep: np.ndarray) -> UserSequences:
    """The sequences restricted to the flagged positions (order kept)."""
    lengths = np.bincount(
        np.repeat(np.arange(seqs.n_users), seqs.lengths)[keep], minlength=seqs.n_users
    )
    indptr = np.zeros(seqs.n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    return UserSequences(indptr, seqs.items[keep], seqs.ts[keep], seqs.n_items)


def pair_in_history(history: UserSequences, user: np.ndarray, item: np.ndarray) -> np.ndarray:
    """(T,) bool: whether each (user, item) pair occurs in the history."""
    width = np.int64(history.n_items)
    row_of = np.repeat(np.arange(history.n_users, dtype=np.int64), history.lengths)
    keys = np.sort(row_of * width + history.items)
    wanted = np.asarray(user, dtype=np.int64) * width + np.asarray(item, dtype=np.int64)
    if len(keys) == 0:
        return np.zeros(len(wanted), dtype=bool)
    pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return keys[pos] == wanted


def leave_one_out(
    inter: Interactions,
    *,
    min_len: int = 3,
    name: str | None = None,
    item_features: ItemFeatures | None = None,
) -> Split:
    """Per-user last event = test, second to last = validation, the rest = train."""
    if min_len < 2:
        raise ValueError(f"min_len must be >= 2 (a validation and a test event), got {min_len}")
    seqs = inter.sequences()
    users = np.flatnonzero(seqs.lengths >= min_len)
    test_pos, valid_pos = seqs.indptr[users + 1] - 1, seqs.indptr[users + 1] - 2
    keep = np.ones(len(seqs.items), dtype=bool)
    keep[test_pos] = False
    keep[valid_pos] = False
    train = _keep(seqs, keep)
    valid = Targets(users, seqs.items[valid_pos], seqs.ts[valid_pos])
    test = Targets(users, seqs.items[test_pos], seqs.ts[test_pos])
    test_history = train.append(valid.user, valid.item, valid.ts)
    meta = {
        "protocol": "leave_one_out",
        "min_len": min_len,
        "n_evaluated_users": len(users),
        "n_train_only_users": int(np.count_nonzero((seqs.lengths > 0) & (seqs.lengths < min_len))),
        "exclude_seen": True,
        "valid_targets_in_history": int(pair_in_history(train, valid.user, valid.item).sum()),
        "test_targets_in_history": int(pair_in_history(test_history, test.user, test.item).sum()),
    }
    return Split(
        name=name or f"{inter.name}-loo",
        train=train,
        valid=valid,
        test=test,
        test_history=test_history,
        user_vocab=inter.user_vocab,
        item_vocab=inter.item_vocab,
        item_features=item_features,
        meta=meta,
    )


def first_per_group(*keys: np.ndarray) -> np.ndarray:
    """Positions of the first row of each distinct key combination (rows already in order)."""
    if len(keys[0]) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(len(keys[0])), *reversed(keys)))
    same_as_previous = np.ones(len(order), dtype=bool)
    same_as_previous[0] = False
    for k in keys:
        sorted_k = k[order]
        same_as_previous[1:] &= sorted_k[1:] == sorted_k[:-1]
    return np.sort(order[~same_as_previous])


def time_cutoffs(ts: np.ndarray, valid_frac: float, test_frac: float) -> tuple[int, int]:
    """(valid_ts, test_ts) leaving about the given fractions of events in each window.

    Cut-offs are event times, so ties keep all events of one second on the same side and the
    realised fractions can differ slightly from the requested ones.
    """
    if not (0 <= valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise ValueError(
            f"need 0 <= valid_frac, 0 < test_frac, sum < 1; got {valid_frac}, {test_frac}"
        )
    if len(ts) == 0:
        raise ValueError("cannot place time cut-offs on zero events")
    s = np.sort(np.asarray(ts, dtype=np.int64))
    n = len(s)
    valid_ts = int(s[min(int(np.floor(n * (1 - valid_frac - test_frac))), n - 1)])
    test_ts = int(s[min(int(np.floor(n * (1 - test_frac))), n - 1)])
    return valid_ts, test_ts


def _window_events(seqs: UserSequences, lo: int, hi: int) -> tuple[np.ndarray, ...]:
    """(user, item, ts) of the events with lo <= ts < hi, per user chronological."""
    mask = (seqs.ts >= lo) & (seqs.ts < hi)
    user = np.repeat(np.arange(seqs.n_users, dtype=np.int64), seqs.lengths)
    return user[mask], seqs.items[mask], seqs.ts[mask]


def _first_new_item(history: UserSequences, user, item, ts) -> Targets:
    """Per user, the first event whose item is not in that user's history."""
    new = ~pair_in_history(history, user, item)
    user, item, ts = user[new], item[new], ts[new]
    first = first_per_group(user)
    return Targets(user[first], item[first], ts[first])


def temporal_split(
    inter: Interactions,
    *,
    valid_ts: int,
    test_ts: int,
    name: str | None = None,
    item_features: ItemFeatures | None = None,
) -> Split:
    """Global time split: train before ``valid_ts``; first new item per user in each window."""
    if valid_ts > test_ts:
        raise ValueError(f"valid_ts {valid_ts} is after test_ts {test_ts}")
    seqs = inter.sequences()
    train = _keep(seqs, seqs.ts < valid_ts)
    w_user, w_item, w_ts = _window_events(seqs, valid_ts, test_ts)
    valid = _first_new_item(train, w_user, w_item, w_ts)
    test_history = train.append(w_user, w_item, w_ts)
    test = _first_new_item(test_history, *_window_events(seqs, test_ts, np.iinfo(np.int64).max))
    cold = train.lengths == 0
    meta = {
        "protocol": "temporal",
        "valid_ts": int(valid_ts),
        "test_ts": int(test_ts),
        "n_evaluated_users": len(test),
        "n_valid_users": len(valid),
        "valid_cold_users": int(cold[valid.user].sum()),
        "test_cold_users": int((test_history.lengths == 0)[test.user].sum()),
        "exclude_seen": True,
    }
    return Split(
        name=name or f"{inter.name}-temporal",
        train=train,
        valid=valid,
        test=test,
        test_history=test_history,
        user_vocab=inter.user_vocab,
        item_vocab=inter.item_vocab,
        item_features=item_features,
        meta=meta,
    )


def temporal_split_by_fraction(
    inter: Interactions,
    valid_frac: float = 0.1,
    test_frac: float = 0.1,
    *,
    name: str | None = None,
    item_features: ItemFeatures | None = None,
) -> Split:
    """``temporal_split`` with cut-offs at the event-time quantiles leaving the given fractions."""
    valid_ts, test_ts = time_cutoffs(inter.ts, valid_frac, test_frac)
    split = temporal_split(
        inter, valid_ts=valid_ts, test_ts=test_ts, name=name, item_features=item_features
    )
    split.meta.update(valid_frac=valid_frac, test_frac=test_frac)
    return split
