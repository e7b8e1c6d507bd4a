"""Session features of (viewer state, candidate, now): one pure function, online and offline.

``session_features`` reads a ``SessionState`` (or None: no live session) and scores nothing:
it only describes how each candidate relates to what the viewer is doing right now. The live
service calls it on the store's state; ``recsys.ranking.offline`` calls it on a state replayed
from logged events up to the query time. Same code, so training features and serving features
agree by construction (and tests/test_session.py checks that they do).

A candidate is a live room (a streamer, optionally with the live session id) or a product
(optionally with the room showing it). Features, in ``FEATURE_NAMES`` order:

* has_session, minutes_since_last_event (TTL minutes when no session), session_events;
* in_room (viewer is in the candidate's room, or the room showing the product), room_dwell_s
  and visit_engagement (likes+comments+shares this visit) when in it, else 0;
* room_affinity, room_engagement (decayed), followed (followed the room this session);
* category_affinity (decayed weight of the candidate's category), category_share (of all);
* product_affinity, in_cart, bought_in_session, coupon_value (best coupon held that applies),
  coupon_depth (value / price), log_price_ratio (log price minus the session's decayed mean
  log price of products touched); all 0 for rooms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.ranking.events import NO_ID
from recsys.ranking.lookup import ItemLookup
from recsys.ranking.session import SessionConfig, SessionState, decayed_value

ROOM, PRODUCT = 0, 1
KIND_NAMES = {"room": ROOM, "product": PRODUCT}
FEATURE_NAMES: tuple[str, ...] = (
    "has_session",
    "minutes_since_last_event",
    "session_events",
    "in_room",
    "room_dwell_s",
    "visit_engagement",
    "room_affinity",
    "room_engagement",
    "followed",
    "category_affinity",
    "category_share",
    "product_affinity",
    "in_cart",
    "bought_in_session",
    "coupon_value",
    "coupon_depth",
    "log_price_ratio",
)
FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
F = FEATURE_INDEX  # short local alias


def _ids(values, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, NO_ID, dtype=np.int64)
    out = np.asarray(values, dtype=np.int64).reshape(-1)
    if len(out) != n:
        raise ValueError(f"Candidates: got {len(out)} ids for {n} candidates")
    return out


@dataclass(frozen=True)
class Candidates:
    """Rooms and products to describe, as parallel raw-id arrays (NO_ID where unknown)."""

    kind: np.ndarray  # (n,) ROOM or PRODUCT
    streamer: np.ndarray  # (n,) the room; for a product the room showing it
    session: np.ndarray  # (n,) live session id
    product: np.ndarray  # (n,) product id; NO_ID for rooms

    def __len__(self) -> int:
        return len(self.kind)

    @classmethod
    def rooms(cls, streamer, session=None) -> Candidates:
        streamer = np.asarray(streamer, dtype=np.int64).reshape(-1)
        n = len(streamer)
        return cls(np.full(n, ROOM), streamer, _ids(session, n), _ids(None, n))

    @classmethod
    def products(cls, product, streamer=None, session=None) -> Candidates:
        product = np.asarray(product, dtype=np.int64).reshape(-1)
        n = len(product)
        return cls(np.full(n, PRODUCT), _ids(streamer, n), _ids(session, n), product)

    def take(self, rows: np.ndarray) -> Candidates:
        return Candidates(
            self.kind[rows], self.streamer[rows], self.session[rows], self.product[rows]
        )


def _lookup(table: dict, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index in ``list(table)`` of each key's entry, whether it has one): the table's few keys
    (at most ``max_items``) are searched, instead of one dict look-up per candidate."""
    own = np.fromiter(table, dtype=np.int64, count=len(table))
    order = np.argsort(own)
    at = np.minimum(np.searchsorted(own[order], keys), len(own) - 1)
    return order[at], own[order[at]] == keys


def _decayed(table: dict, keys: np.ndarray, now: int, half_life: float) -> np.ndarray:
    """Decayed value at ``now`` of each key's entry (0 for keys not in the table)."""
    if not table:
        return np.zeros(len(keys))
    at, hit = _lookup(table, np.asarray(keys, dtype=np.int64))
    hit &= np.array([bool(e) for e in table.values()])[at]
    value = np.array([e[0] if e else 0.0 for e in table.values()], dtype=np.float64)[at]
    ts = np.array([e[1] if e else now for e in table.values()], dtype=np.float64)[at]
    value, ts = np.where(hit, value, 0.0), np.where(hit, ts, float(now))
    return value * np.exp2(-np.maximum(now - ts, 0.0) / half_life)


def _member(table: dict, keys: np.ndarray) -> np.ndarray:
    if not table:
        return np.zeros(len(keys))
    return _lookup(table, np.asarray(keys, dtype=np.int64))[1].astype(np.float64)


def _in_room(state: SessionState, c: Candidates) -> np.ndarray:
    """Vector form of ``SessionState.in_room``."""
    if state.room_streamer == NO_ID:
        return np.zeros(len(c), dtype=bool)
    by_session = (c.session != NO_ID) & (state.room_session != NO_ID)
    return np.where(by_session, c.session == state.room_session, c.streamer == state.room_streamer)


def _room_features(out, state, c: Candidates, now: int, config: SessionConfig) -> None:
    in_room = _in_room(state, c)
    out[:, F["in_room"]] = in_room
    out[:, F["room_dwell_s"]] = in_room * max(now - state.room_enter_ts, 0)
    out[:, F["visit_engagement"]] = in_room * state.visit_engagement
    out[:, F["room_affinity"]] = _decayed(state.rooms, c.streamer, now, config.half_life_s)
    out[:, F["room_engagement"]] = _decayed(
        state.engagement, c.streamer, now, config.engagement_half_life_s
    )
    out[:, F["followed"]] = _member(state.followed, c.streamer)


def _category_features(out, state, category: np.ndarray, now: int, hl: float) -> None:
    affinity = _decayed(state.categories, category, now, hl)
    total = sum(decayed_value(e, now, hl) for e in state.categories.values())
    out[:, F["category_affinity"]] = affinity
    out[:, F["category_share"]] = affinity / total if total > 0 else 0.0


def _product_features(out, state, c: Candidates, price, now: int, hl: float) -> None:
    is_product = c.kind == PRODUCT
    product = np.where(is_product, c.product, NO_ID)
    out[:, F["product_affinity"]] = _decayed(state.products, product, now, hl) * is_product
    out[:, F["in_cart"]] = _member(state.cart, product) * is_product
    out[:, F["bought_in_session"]] = _member(state.bought, product) * is_product
    coupons = state.coupons
    own = np.array([coupons.get(p, 0.0) for p in product.tolist()]) if coupons else 0.0
    coupon = np.maximum(own, coupons.get(NO_ID, 0.0)) * is_product
    out[:, F["coupon_value"]] = coupon
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, F["coupon_depth"]] = np.where(price > 0, coupon / price, 0.0)
        weight = decayed_value(state.price_weight, now, hl)
        if weight > 0:
            mean = decayed_value(state.price_sum, now, hl) / weight
            ratio = np.log(price) - mean
            out[:, F["log_price_ratio"]] = np.where(is_product & (price > 0), ratio, 0.0)


def candidate_category_price(c: Candidates, lookup: ItemLookup) -> tuple[np.ndarray, np.ndarray]:
    """(category code, price) per candidate: a product's own, a room's streamer's (no price)."""
    p_category, p_price = lookup.products(c.product)
    is_product = c.kind == PRODUCT
    category = np.where(is_product, p_category, lookup.streamers(c.streamer))
    return category, np.where(is_product, p_price, np.nan)


def session_features(
    state: SessionState | None,
    candidates: Candidates,
    now: int,
    lookup: ItemLookup,
    config: SessionConfig,
) -> np.ndarray:
    """(n_candidates, len(FEATURE_NAMES)) float64 features of the candidates at ``now``."""
    out = np.zeros((len(candidates), len(FEATURE_NAMES)), dtype=np.float64)
    if state is None:
        out[:, F["minutes_since_last_event"]] = config.ttl_s / 60.0
        return out
    out[:, F["has_session"]] = 1.0
    out[:, F["minutes_since_last_event"]] = max(now - state.last_ts, 0) / 60.0
    out[:, F["session_events"]] = state.n_events
    category, price = candidate_category_price(candidates, lookup)
    _room_features(out, state, candidates, now, config)
    _category_features(out, state, category, now, config.half_life_s)
    _product_features(out, state, candidates, price, now, config.half_life_s)
    return out
