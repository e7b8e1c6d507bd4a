"""Live-commerce tables -> interactions, item features and availability intervals.

Two recommendation targets come out of the same tables:

* rooms: which live room (streamer) a viewer enters, from ``enter`` events;
* products: which product a viewer engages with, from ``click`` / ``cart`` / ``purchase``.

Vocabularies come from the entity tables (every user, streamer and product, active or not), so
an item that is live but never chosen is still a candidate; events that name an id missing from
its table are rejected.

The live time split over them is ``recsys.data.splits.live_time_split``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from recsys.data.features import category_codes, quantile_bands, scatter, token_matrix
from recsys.data.interactions import Interactions, ItemFeatures
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
