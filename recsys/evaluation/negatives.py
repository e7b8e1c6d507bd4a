"""Seeded negative items for the sampled-ranking protocol.

Each target gets ``n_negatives`` distinct items drawn uniformly from the items its user has not
interacted with (history and the target itself excluded). Draws come from a counter-based hash
of (seed, target position, slot, attempt), not from a shared generator, so the negatives of a
target do not depend on batch size, on which other targets are evaluated, or on the model:
two models evaluated with the same seed are ranked against the same negatives, which is what
a paired significance test needs.
"""

from __future__ import annotations

import numpy as np

from recsys.data.interactions import UserSequences
from recsys.data.vocab import N_RESERVED

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
# Rows still colliding after this many redraws (users who saw almost the whole catalogue) are
# drawn exactly from their explicit complement instead.
_MAX_ROUNDS = 64


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijective, well-scrambled uint64 -> uint64 map (wraps mod 2**64)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def seen_keys(history: UserSequences) -> np.ndarray:
    """Sorted unique user * n_items + item keys of every (user, item) in ``history``."""
    users = np.repeat(np.arange(history.n_users, dtype=np.int64), history.lengths)
    return np.unique(users * history.n_items + history.items)


def is_seen(keys: np.ndarray, n_items: int, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Bool array shaped like ``items``: whether (user, item) is among the sorted ``keys``."""
    query = users * n_items + items
    pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    return (keys[pos] == query) if len(keys) else np.zeros(query.shape, dtype=bool)


def _later_duplicates(items: np.ndarray) -> np.ndarray:
    """(T, N) bool: True where the item already occurs earlier in the same row."""
    order = np.argsort(items, axis=1, kind="stable")
    ordered = np.take_along_axis(items, order, axis=1)
    dup_sorted = np.zeros(items.shape, dtype=bool)
    dup_sorted[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    dup = np.zeros(items.shape, dtype=bool)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    return dup


def _check_enough(keys, n_items, users, target, n_negatives) -> None:
    user_of_key = keys[keys % n_items >= N_RESERVED] // n_items
    n_seen = np.bincount(user_of_key, minlength=int(users.max(initial=0)) + 1)[users]
    n_seen = n_seen + ~is_seen(keys, n_items, users, target)  # the target counts once
    short = (n_items - N_RESERVED) - n_seen < n_negatives
    if short.any():
        i = int(np.flatnonzero(short)[0])
        raise ValueError(
            f"sampled protocol: target row {i} (user {users[i]}) has fewer than "
            f"{n_negatives} items it has not interacted with"
        )


def _exact_row(keys, n_items, user, target, n_negatives, seed, position) -> np.ndarray:
    """Uniform draw without replacement from the explicit complement of one user's items."""
    items = np.arange(N_RESERVED, n_items, dtype=np.int64)
    users = np.full(len(items), user, dtype=np.int64)
    free = items[~is_seen(keys, n_items, users, items) & (items != target)]
    rng = np.random.default_rng([seed, position])
    return rng.choice(free, size=n_negatives, replace=False)


def sample_negatives(
    *,
    users: np.ndarray,
    target: np.ndarray,
    position: np.ndarray,
    history: UserSequences,
    n_negatives: int,
    seed: int,
    keys: np.ndarray | None = None,
) -> np.ndarray:
    """(T, n_negatives) int64 distinct unseen items per target.

    ``position`` identifies each target (its row in the stage's ``Targets``) and, with
    ``seed``, fully determines its negatives. ``keys`` may pass a cached ``seen_keys(history)``.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    n_items = history.n_items
    keys = seen_keys(history) if keys is None else keys
    _check_enough(keys, n_items, users, target, n_negatives)
    base = _mix(_mix(np.array([seed], dtype=np.uint64)) + position.astype(np.uint64))
    state = _mix(base[:, None] + np.arange(n_negatives, dtype=np.uint64)[None, :])  # (T, N)
    n_free = np.uint64(n_items - N_RESERVED)
    items = np.empty(state.shape, dtype=np.int64)
    redraw = np.ones(state.shape, dtype=bool)
    for _ in range(_MAX_ROUNDS):
        items[redraw] = (state[redraw] % n_free).astype(np.int64) + N_RESERVED
        user_grid = np.broadcast_to(users[:, None], items.shape)
        redraw = is_seen(keys, n_items, user_grid, items) | (items == target[:, None])
        redraw |= _later_duplicates(items)
        if not redraw.any():
            return items
        state[redraw] = _mix(state[redraw])
    for row in np.flatnonzero(redraw.any(axis=1)):
        items[row] = _exact_row(
            keys, n_items, users[row], target[row], n_negatives, seed, int(position[row])
        )
    return items
