"""Live-commerce tables -> interactions, item features, and the live time split.

Two recommendation targets come out of the same tables:

* rooms: which live room (streamer) a viewer enters, from ``enter`` events;
* products: which product a viewer engages with, from ``click`` / ``cart`` / ``purchase``.

Vocabularies come from the entity tables (every user, streamer and product, active or not), so
an item that is live but never chosen is still a candidate; events that name an id missing from
its table are rejected.

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

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from recsys.data.availability import is_available, live_sets, sorted_unique
from recsys.data.features import category_codes, quantile_bands, scatter, token_matrix
from recsys.data.interactions import Interactions, ItemFeatures, Split, Targets
from recsys.data.splits import first_per_group, pair_in_history, time_cutoffs
from recsys.data.tables import LiveCommerceTables
from recsys.data.vocab import Vocab

PRODUCT_EVENTS: tuple[str, ...] = ("click", "cart", "purchase")
Target = Literal["room", "product"]


@dataclass(frozen=True)
class TargetEvents:
    """Target-kind events in time order, in dense indices, with their live session."""

    inter: Interactions
    session: np.ndarray  # (N,) int64 raw live session id, -1 when the event names none
    event_id: np.ndarray  # (N,) int64


def _vocabs(tables: LiveCommerceTables, target: Target) -> tuple[Vocab, Vocab]:
    users = Vocab.build("user", tables.users["user_id"].to_numpy())
    if target == "room":
        return users, Vocab.build("streamer", tables.streamers["streamer_id"].to_numpy())
    return users, Vocab.build("product", tables.products["product_id"].to_numpy())


def _required(events: pd.DataFrame, field: str) -> np.ndarray:
    col = events[field]
    if col.isna().any():
        row = events.loc[col.isna()].iloc[0]
        raise ValueError(
            f"table 'events', event_id {row['event_id']} ({row['event_type']}): "
            f"field {field!r} is required and missing"
        )
    return col.to_numpy(dtype=np.int64)


def _encode_known(vocab: Vocab, raw: np.ndarray, events: pd.DataFrame, field: str, table: str):
    index = vocab.encode(raw)
    unknown = np.flatnonzero(index < 2)
    if len(unknown):
        i = unknown[0]
        raise ValueError(
            f"table 'events', event_id {events['event_id'].iloc[i]}: field {field!r} "
            f"= {raw[i]} is not in table {table!r}"
        )
    return index


def target_events(
    tables: LiveCommerceTables, target: Target, event_types: tuple[str, ...] = PRODUCT_EVENTS
) -> TargetEvents:
    """The events that express a choice of the target kind, sorted by (ts, event_id)."""
    if target not in ("room", "product"):
        raise ValueError(f"target must be 'room' or 'product', got {target!r}")
    types = ("enter",) if target == "room" else tuple(event_types)
    ev = tables.events
    ev = ev.loc[ev["event_type"].isin(types)].sort_values(["ts", "event_id"], kind="stable")
    user_vocab, item_vocab = _vocabs(tables, target)
    item_field = "streamer_id" if target == "room" else "product_id"
    item_table = "streamers" if target == "room" else "products"
    item_raw = _required(ev, item_field)
    if target == "room":
        _check_session_streamer(ev, tables.live_sessions, item_raw)
    inter = Interactions(
        user=_encode_known(user_vocab, ev["user_id"].to_numpy(np.int64), ev, "user_id", "users"),
        item=_encode_known(item_vocab, item_raw, ev, item_field, item_table),
        ts=ev["ts"].to_numpy(dtype=np.int64),
        user_vocab=user_vocab,
        item_vocab=item_vocab,
        name="rooms" if target == "room" else "products",
    )
    session = ev["session_id"].fillna(-1).to_numpy(dtype=np.int64)
    return TargetEvents(inter, session, ev["event_id"].to_numpy(dtype=np.int64))


def _check_session_streamer(ev: pd.DataFrame, sessions: pd.DataFrame, streamer: np.ndarray):
    """An enter must name the streamer of the session it enters."""
    session = _required(ev, "session_id")
    owner = pd.Series(sessions["streamer_id"].to_numpy(), index=sessions["session_id"].to_numpy())
    expected = owner.reindex(session).to_numpy(dtype=np.float64)
    bad = np.flatnonzero(expected != streamer)
    if len(bad):
        i = bad[0]
        raise ValueError(
            f"table 'events', event_id {ev['event_id'].iloc[i]}: enter names streamer "
            f"{streamer[i]} but live session {session[i]} belongs to "
            f"{'no known streamer' if np.isnan(expected[i]) else int(expected[i])}"
        )


def product_interactions(
    tables: LiveCommerceTables, event_types: tuple[str, ...] = PRODUCT_EVENTS
) -> Interactions:
    """User x product interactions from the given event types (items = products)."""
    return target_events(tables, "product", event_types).inter


def room_interactions(tables: LiveCommerceTables) -> Interactions:
    """User x live room interactions from ``enter`` events (items = streamers)."""
    return target_events(tables, "room").inter


def product_features(tables: LiveCommerceTables, vocab: Vocab) -> ItemFeatures:
    """Category, brand, imported flag, price band; price and log price; keyword tokens."""
    p = tables.products
    index, n = vocab.encode(p["product_id"].to_numpy(np.int64)), len(vocab)
    price = p["price"].to_numpy(dtype=np.float64)
    log_price = np.log1p(np.where(price >= 0, price, np.nan))
    imported = p["imported"].astype("boolean")
    imported_code = np.where(imported.isna(), 0, imported.fillna(False).astype(int) + 1)
    tokens, names = token_matrix(p["keywords"], index, n)
    return ItemFeatures(
        categorical={
            "category": scatter(index, category_codes(p["category"]), n, 0, np.int64),
            "brand": scatter(index, category_codes(p["brand"]), n, 0, np.int64),
            "imported": scatter(index, imported_code, n, 0, np.int64),
            "price_band": scatter(index, quantile_bands(log_price, 10), n, 0, np.int64),
        },
        numeric={
            "price": scatter(index, price, n, np.nan, np.float32),
            "log_price": scatter(index, log_price, n, np.nan, np.float32),
        },
        tokens=tokens,
        token_names=names,
    )


def room_features(tables: LiveCommerceTables, vocab: Vocab) -> ItemFeatures:
    """The streamer's category, and log(1 + followers)."""
    s = tables.streamers
    index, n = vocab.encode(s["streamer_id"].to_numpy(np.int64)), len(vocab)
    followers = np.log1p(s["follower_count"].to_numpy(dtype=np.float64))
    return ItemFeatures(
        categorical={"category": scatter(index, category_codes(s["category"]), n, 0, np.int64)},
        numeric={"log_followers": scatter(index, followers, n, np.nan, np.float32)},
    )


def availability_intervals(
    tables: LiveCommerceTables, target: Target, vocab: Vocab, shelf: str = "session"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item index, start, end) of every closed interval during which an item was available."""
    sessions = tables.live_sessions
    if target == "room":
        item = _encode_entity(vocab, sessions["streamer_id"], "live_sessions", "streamer_id")
        return item, sessions["start_ts"].to_numpy(np.int64), sessions["end_ts"].to_numpy(np.int64)
    shown = tables.showcase.merge(
        sessions[["session_id", "start_ts", "end_ts"]],
        on="session_id",
        how="left",
        suffixes=("", "_session"),
        validate="many_to_one",
    )
    if shown["start_ts_session"].isna().any():
        orphan = shown.loc[shown["start_ts_session"].isna(), "session_id"].iloc[0]
        raise ValueError(f"table 'showcase': session_id {orphan} is not in table 'live_sessions'")
    start, end = (
        shown["start_ts_session"].to_numpy(np.int64),
        shown["end_ts_session"].to_numpy(np.int64),
    )
    if shelf == "showcase":
        start = np.maximum(start, shown["start_ts"].to_numpy(np.int64))
        end = np.minimum(end, shown["end_ts"].to_numpy(np.int64))
    elif shelf != "session":
        raise ValueError(f"shelf must be 'session' or 'showcase', got {shelf!r}")
    item = _encode_entity(vocab, shown["product_id"], "showcase", "product_id")
    on_air = end >= start  # a showcase slot outside its broadcast never reaches a viewer
    return item[on_air], start[on_air], end[on_air]


def _encode_entity(vocab: Vocab, raw: pd.Series, table: str, field: str) -> np.ndarray:
    index = vocab.encode(raw.to_numpy(np.int64))
    if np.any(index < 2):
        bad = raw.to_numpy()[np.flatnonzero(index < 2)[0]]
        raise ValueError(f"table {table!r}: {field} {bad} is not a known {vocab.name}")
    return index


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
    indptr, cands = live_sets(*intervals, ts)
    return Targets(user, item, ts, indptr, cands), n_off


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
        "mean_test_candidates": float(np.diff(test.cand_indptr).mean()) if len(test) else 0.0,
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
    before = inter.ts < valid_ts
    in_valid = ~before & (inter.ts < test_ts)
    train = Interactions(
        inter.user[before], inter.item[before], inter.ts[before], inter.user_vocab, inter.item_vocab
    ).sequences()
    picks = {"dedupe": dedupe, "off_shelf": off_shelf}
    valid, valid_off = _window_targets(ev, in_valid, intervals, **picks)
    test, test_off = _window_targets(ev, inter.ts >= test_ts, intervals, **picks)
    test_history = train.append(inter.user[in_valid], inter.item[in_valid], inter.ts[in_valid])
    if target == "room":
        features = room_features(tables, inter.item_vocab)
    else:
        features = product_features(tables, inter.item_vocab)
    meta = {
        "protocol": "live_time",
        "target": target,
        "event_types": ["enter"] if target == "room" else list(event_types),
        "valid_ts": valid_ts,
        "test_ts": test_ts,
        "target_rule": "first per (user, item, live session)" if dedupe else "every event",
        "shelf": shelf,
        "exclude_seen": False,
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
