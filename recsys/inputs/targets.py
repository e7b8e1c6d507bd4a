"""Per-slot targets: what each input slot of a training window is trained to predict.

A training window holds ``maxlen + 1`` tokens; the first ``maxlen`` are the input, and each
head's target at a slot is the next token of that head's kind after it (for item-only streams
simply the next item), or a random later one. Only fresh choices are targets
(``TokenLog.first_in_visit``), as evaluation counts them once. With a target lag, a slot's
target is instead the first fresh token of the head's kind at least that many seconds later.
A slot with no target gets 0. Every construction is vectorised over users.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from recsys.inputs.tokens import PAD_KIND, ROOM, TokenLog


def next_of_kind(
    kind: np.ndarray, entity: np.ndarray, head_kind: int, real: np.ndarray | None = None
) -> np.ndarray:
    """(U, L) entity of the first token of ``head_kind`` after each slot of (U, L + 1) windows.

    Slots that are padding (``real`` (U, L) False; default: ``kind`` is padding there), or after
    which no such token follows, get 0.
    """
    real = kind[:, :-1] != PAD_KIND if real is None else real
    n = kind.shape[1]
    slot = np.where(kind == head_kind, np.arange(n), n)  # (U, L + 1), n = none
    # Reverse running minimum: the nearest matching slot at or after each slot.
    nearest = np.minimum.accumulate(slot[:, ::-1], axis=1)[:, ::-1]
    after = nearest[:, 1:]  # (U, L): strictly after each input slot
    found = after < n
    picked = np.take_along_axis(entity, np.minimum(after, n - 1), axis=1)
    return np.where(found & real, picked, 0)


def future_of_kind(
    kind: np.ndarray,
    entity: np.ndarray,
    head_kind: int,
    uniform: np.ndarray,
    real: np.ndarray | None = None,
    first: np.ndarray | None = None,
) -> np.ndarray:
    """(U, L) entity of a random later token of ``head_kind`` for each slot of (U, L + 1) windows.

    ``uniform`` (U, L) in [0, 1) picks which of the later tokens of that kind, among those at
    positions >= ``first`` (U, L) (default: the next slot); slots that are padding (``real`` as
    for ``next_of_kind``), or with no such token from ``first`` on, get 0. Trains for "what comes
    later" (any future action, as PinnerFormer's dense all-action loss) rather than the next.
    """
    real = kind[:, :-1] != PAD_KIND if real is None else real
    n = kind.shape[1]
    first = np.broadcast_to(np.arange(1, n), real.shape) if first is None else first
    is_kind = kind == head_kind  # (U, L + 1)
    from_pos = np.zeros((kind.shape[0], n + 1), dtype=np.int64)  # matches at positions >= j
    from_pos[:, :n] = np.cumsum(is_kind[:, ::-1], axis=1)[:, ::-1]
    later = np.take_along_axis(from_pos, first, axis=1)  # (U, L)
    upto = from_pos[:, :1] - later  # (U, L) matches before ``first``
    rows, cols = np.nonzero(is_kind)  # row-major, so each row's matches are contiguous
    if len(cols) == 0:
        return np.zeros(later.shape, dtype=np.int64)
    row_start = np.cumsum(is_kind.sum(axis=1)) - is_kind.sum(axis=1)  # (U,)
    nth = upto + np.floor(uniform * later).astype(np.int64)  # index among the row's matches
    found = (later > 0) & real
    flat = np.where(found, row_start[:, None] + nth, 0)
    return np.where(found, entity[rows[flat], cols[flat]], 0)


def lagged_next(
    log: TokenLog, target_kind: np.ndarray, head_kind: int, lag_s: int | np.ndarray
) -> np.ndarray:
    """(N,) log position of the first token with ``target_kind == head_kind`` in the same user's
    row at least ``lag_s`` (> 0; one for all or (N,) per token) seconds after each token; -1
    where there is none.

    A live evaluation scores a history as of one moment against the choices of the days after
    it, not against the next click of the same session: a lag trains for that gap.
    """
    lag_s = np.asarray(lag_s, dtype=np.int64)
    if lag_s.size and lag_s.min() <= 0:
        raise ValueError(f"lags must be > 0 seconds, got {int(lag_s.min())}")
    out = np.full(len(log), -1, dtype=np.int64)
    match = np.flatnonzero(target_kind == head_kind)
    if len(match) == 0:
        return out
    user = np.repeat(np.arange(log.n_users, dtype=np.int64), log.lengths)
    # One sorted key per token: rows are time-ordered, so (user, time) order is log order.
    t = log.ts - log.ts.min()
    span = int(t.max()) + int(lag_s.max(initial=0)) + 1
    key = user * span + t
    at = np.searchsorted(key[match], key + lag_s, side="left")  # (N,)
    found = at < len(match)
    pos = match[np.minimum(at, len(match) - 1)]
    found &= user[pos] == user
    out[found] = pos[found]
    return out


def next_visit(kind: np.ndarray) -> np.ndarray:
    """(U, L) position of the first room entry after each slot of (U, L + 1) windows.

    L + 1 marks slots after which no room is entered.
    """
    n = kind.shape[1]
    slot = np.where(kind == ROOM, np.arange(n), n)
    return np.minimum.accumulate(slot[:, ::-1], axis=1)[:, ::-1][:, 1:]


def lagged_targets(
    log: TokenLog,
    users: np.ndarray,
    ends: np.ndarray,
    maxlen: int,
    heads: Mapping[str, int],
    lag_s: int | np.ndarray,
    real: np.ndarray,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per head, the (U, L) entity and time of each input slot's lagged target (0: none)."""
    slots = np.asarray(ends)[:, None] - maxlen - 1 + np.arange(maxlen)  # (U, L) log positions
    target_kind = np.where(log.first_in_visit(), log.kind, PAD_KIND)
    targets, times = {}, {}
    for h, k in heads.items():
        nxt = lagged_next(log, target_kind, k, lag_s)
        pos = np.where(real, nxt[np.where(real, slots, 0)], -1)  # (U, L)
        safe = np.maximum(pos, 0)
        targets[h] = np.where(pos >= 0, log.entity[safe], 0)
        times[h] = np.where(pos >= 0, log.ts[safe], 0)
    return targets, times
