"""The live time split: target events cut at two global times, each target with what was live.

``live_time_split`` cuts the target events at two global times. Train is every target event
before ``valid_ts``. In each window, a target is the first event of each (user, item, live
session) (``dedupe=True``; ``False`` keeps every event), so a viewer who re-enters the same
broadcast or clicks, carts and buys one product in one broadcast is one target, not three
(product events that name no session count as one session per window). Each
target carries the items available at its time: for rooms the streamers with a session on air,
for products the products on the shelf of any room on air (``shelf='session'``: the session's
showcase list for the whole broadcast; ``shelf='showcase'``: only during the product's own
showcase slot). The target must be among them: off-shelf targets raise, or with
``off_shelf='drop'`` are removed and counted in ``meta``.

Repeat consumption is the norm here (viewers return to rooms they follow), so targets may repeat
history items and ``meta['exclude_seen']`` is ``False``: evaluation must rank within the live
candidates without removing items the user has already chosen.
"""

from __future__ import annotations

import numpy as np

from recsys.data.availability import is_available, live_segments, sorted_unique
from recsys.data.interactions import Interactions, Split, Targets
from recsys.data.live import (
    PRODUCT_EVENTS,
    Target,
    TargetEvents,
    availability_intervals,
    product_features,
    room_features,
    target_events,
)
from recsys.data.splits.sequences import first_per_group, pair_in_history, time_cutoffs
from recsys.data.tables import LiveCommerceTables


def _window_targets(
    ev: TargetEvents,
    mask: np.ndarray,
    intervals: tuple[np.ndarray, ...],
    *,
    dedupe: bool,
    off_shelf: str,
) -> tuple[Targets, int]:
    """Targets among the masked events, each with its live candidates; and the off-shelf count."""
    rows = np.flatnonzero(mask)
    if dedupe:
        inter = ev.inter
        rows = rows[first_per_group(inter.user[rows], inter.item[rows], ev.session[rows])]
    inside = is_available(*intervals, ev.inter.item[rows], ev.inter.ts[rows])
    n_off = int(np.count_nonzero(~inside))
    if n_off and off_shelf == "raise":
        i = rows[np.flatnonzero(~inside)[0]]
        vocab = ev.inter.item_vocab
        raise ValueError(
            f"table 'events', event_id {ev.event_id[i]}: {vocab.name} "
            f"{vocab.decode(ev.inter.item[i : i + 1])[0]} was not available at ts "
            f"{ev.inter.ts[i]} ({n_off} such targets; off_shelf='drop' removes them)"
        )
    rows = rows[inside]
    user, item, ts = ev.inter.user[rows], ev.inter.item[rows], ev.inter.ts[rows]
    sets, indptr, cands = live_segments(*intervals, ts)
    return Targets(user, item, ts, indptr, cands, sets), n_off


def _histories(inter: Interactions, before: np.ndarray, in_valid: np.ndarray):
    """(training sequences: the events before the validation window, test history: those plus
    the validation window's)."""
    train = Interactions(
        inter.user[before], inter.item[before], inter.ts[before], inter.user_vocab, inter.item_vocab
    ).sequences()
    return train, train.append(inter.user[in_valid], inter.item[in_valid], inter.ts[in_valid])


def _protocol(target: str, event_types: tuple[str, ...], dedupe: bool, shelf: str) -> dict:
    """How the split's targets were chosen (its ``meta``)."""
    return {
        "protocol": "live_time",
        "target": target,
        "event_types": ["enter"] if target == "room" else list(event_types),
        "target_rule": "first per (user, item, live session)" if dedupe else "every event",
        "shelf": shelf,
        "exclude_seen": False,
    }


def _cutoffs(
    ts: np.ndarray, valid_frac: float, test_frac: float, valid_ts, test_ts
) -> tuple[int, int]:
    """Explicit cut-offs when both are given, else the event-time quantiles."""
    if (valid_ts is None) != (test_ts is None):
        raise ValueError("give both valid_ts and test_ts, or neither")
    if valid_ts is None:
        return time_cutoffs(ts, valid_frac, test_frac)
    if valid_ts > test_ts:
        raise ValueError(f"valid_ts {valid_ts} is after test_ts {test_ts}")
    return int(valid_ts), int(test_ts)


def _target_stats(valid: Targets, test: Targets, test_history) -> dict:
    return {
        "n_evaluated_users": len(sorted_unique(test.user)),
        "n_valid_targets": len(valid),
        "n_test_targets": len(test),
        "test_targets_in_history": int(pair_in_history(test_history, test.user, test.item).sum()),
        "mean_test_candidates": float(test.n_candidates().mean()) if len(test) else 0.0,
    }


def live_time_split(
    tables: LiveCommerceTables,
    *,
    target: Target = "room",
    valid_frac: float = 0.1,
    test_frac: float = 0.1,
    event_types: tuple[str, ...] = PRODUCT_EVENTS,
    dedupe: bool = True,
    shelf: str = "session",
    off_shelf: str = "raise",
    valid_ts: int | None = None,
    test_ts: int | None = None,
    name: str | None = None,
) -> Split:
    """Global time split of the target events with per-target live candidate sets.

    The cut-offs are the event-time quantiles leaving ``valid_frac`` and ``test_frac`` of the
    target events in the two windows, unless ``valid_ts`` and ``test_ts`` are both given.
    """
    if off_shelf not in ("raise", "drop"):
        raise ValueError(f"off_shelf must be 'raise' or 'drop', got {off_shelf!r}")
    ev = target_events(tables, target, event_types)
    inter = ev.inter
    valid_ts, test_ts = _cutoffs(inter.ts, valid_frac, test_frac, valid_ts, test_ts)
    intervals = availability_intervals(tables, target, inter.item_vocab, shelf)
    in_valid = (inter.ts >= valid_ts) & (inter.ts < test_ts)
    train, test_history = _histories(inter, inter.ts < valid_ts, in_valid)
    picks = {"dedupe": dedupe, "off_shelf": off_shelf}
    valid, valid_off = _window_targets(ev, in_valid, intervals, **picks)
    test, test_off = _window_targets(ev, inter.ts >= test_ts, intervals, **picks)
    features = (room_features if target == "room" else product_features)(tables, inter.item_vocab)
    meta = {
        **_protocol(target, event_types, dedupe, shelf),
        "valid_ts": valid_ts,
        "test_ts": test_ts,
        "valid_off_shelf_dropped": valid_off,
        "test_off_shelf_dropped": test_off,
        **_target_stats(valid, test, test_history),
    }
    return Split(
        name=name or f"live-{target}",
        train=train,
        valid=valid,
        test=test,
        test_history=test_history,
        user_vocab=inter.user_vocab,
        item_vocab=inter.item_vocab,
        item_features=features,
        meta=meta,
    )
