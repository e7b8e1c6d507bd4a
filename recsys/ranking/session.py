"""One viewer's live session state, updated in O(1) per event.

What a ranker wants to know about the viewer right now: which room they are in and since
when, which categories, rooms and products they touched lately (exponentially decayed), how
much they engage in each room (likes, comments, shares), what sits in their cart, which
coupons they hold, what they bought and whom they followed during the session.

Decayed quantities are stored as ``[value, ts]``: the value as of time ``ts``. An event at
``t >= ts`` rescales the value to ``t`` and adds its weight; an event from the past adds its
weight decayed to ``ts`` instead, so a late event lands exactly where it would have in order.
Reading at ``now`` applies the decay then (``2 ** (-(now - ts) / half_life)``), so nothing is
swept periodically. Room, cart, coupon and purchase bookkeeping follows arrival order (a late
``enter`` still moves the viewer into that room); only the decayed sums are order-free.
Every per-key table is capped at ``max_items`` keys: a table is a dict in update order (an
updated key moves to the end) and the least recently updated key goes first.

Weights per event type (``AFFINITY_WEIGHT``): entering a room or clicking a product counts 1,
a cart 2, a purchase 3, a follow 2, a comment, share or coupon claim 0.5, a like 0.1; leaving
and refunds count nothing (a refund instead takes the product off the session's purchases).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from recsys.data.schema import EVENT_TYPES
from recsys.ranking.events import EVENT_CODE, NO_ID
from recsys.ranking.lookup import UNKNOWN, ItemLookup

_WEIGHTS = {
    "enter": 1.0,
    "leave": 0.0,
    "comment": 0.5,
    "like": 0.1,
    "click": 1.0,
    "cart": 2.0,
    "purchase": 3.0,
    "refund": 0.0,
    "coupon_claim": 0.5,
    "follow": 2.0,
    "share": 0.5,
}
AFFINITY_WEIGHT: tuple[float, ...] = tuple(_WEIGHTS[name] for name in EVENT_TYPES)
ENTER, LEAVE, CART, PURCHASE, REFUND, COUPON, FOLLOW = (
    EVENT_CODE[n]
    for n in ("enter", "leave", "cart", "purchase", "refund", "coupon_claim", "follow")
)
ENGAGE = frozenset(EVENT_CODE[n] for n in ("like", "comment", "share"))


@dataclass(frozen=True)
class SessionConfig:
    """How fast signals fade, when a session ends, and how much any one session may hold."""

    half_life_s: float = 1800.0  # category, room, product affinity and price level
    engagement_half_life_s: float = 600.0  # likes, comments, shares per room
    ttl_s: int = 4 * 3600  # a viewer idle this long starts a new session
    max_users: int = 100_000  # store size cap (least recently updated viewer evicted)
    max_items: int = 64  # keys per table of one viewer (categories, products, cart...)

    def __post_init__(self) -> None:
        for name in ("half_life_s", "engagement_half_life_s", "ttl_s", "max_users", "max_items"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SessionConfig.{name} must be > 0, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


def decay(dt: float, half_life: float) -> float:
    """Weight left after ``dt`` seconds; a negative ``dt`` (reading the past) counts as 0."""
    return 2.0 ** (-max(dt, 0) / half_life)


def bump(entry: list, weight: float, ts: int, half_life: float) -> None:
    """Add ``weight`` at ``ts`` to a decayed ``[value, ts]`` entry in place."""
    if ts >= entry[1]:
        entry[0] = entry[0] * decay(ts - entry[1], half_life) + weight
        entry[1] = ts
    else:
        entry[0] += weight * decay(entry[1] - ts, half_life)


def decayed_value(entry: list | None, now: int, half_life: float) -> float:
    return 0.0 if entry is None else entry[0] * decay(now - entry[1], half_life)


def _touch(table: dict, key: int, value, cap: int) -> None:
    """Set ``table[key]`` as the most recent key, dropping the least recent beyond ``cap``."""
    table.pop(key, None)
    table[key] = value
    if len(table) > cap:
        del table[next(iter(table))]


def _add(table: dict, key: int, weight: float, ts: int, half_life: float, cap: int) -> None:
    entry = table.pop(key, None)
    if entry is None:
        entry = [weight, ts]
    else:
        bump(entry, weight, ts, half_life)
    _touch(table, key, entry, cap)


class SessionState:
    """Everything one viewer's session carries; see the module docstring for the semantics."""

    __slots__ = (
        "last_ts",
        "n_events",
        "room_session",
        "room_streamer",
        "room_enter_ts",
        "visit_engagement",
        "categories",
        "rooms",
        "products",
        "engagement",
        "price_sum",
        "price_weight",
        "cart",
        "coupons",
        "bought",
        "followed",
    )
    TABLES = (
        "categories",
        "rooms",
        "products",
        "engagement",
        "cart",
        "coupons",
        "bought",
        "followed",
    )

    def __init__(self) -> None:
        self.last_ts = -1
        self.n_events = 0
        self.room_session = self.room_streamer = self.room_enter_ts = NO_ID
        self.visit_engagement = 0  # likes, comments, shares since entering the current room
        self.categories: dict[int, list] = {}  # category code -> decayed affinity
        self.rooms: dict[int, list] = {}  # streamer id -> decayed affinity
        self.products: dict[int, list] = {}  # product id -> decayed affinity
        self.engagement: dict[int, list] = {}  # streamer id -> decayed likes+comments+shares
        self.price_sum = [0.0, 0]  # decayed sum of weight * log(price) of products touched
        self.price_weight = [0.0, 0]  # decayed sum of those weights
        self.cart: dict[int, int] = {}  # product id -> time carted
        self.coupons: dict[int, float] = {}  # product id (NO_ID: any product) -> coupon value
        self.bought: dict[int, int] = {}  # product id -> time bought
        self.followed: dict[int, int] = {}  # streamer id -> time followed

    def apply(
        self,
        code: int,
        ts: int,
        session: int,
        streamer: int,
        product: int,
        value: float,
        lookup: ItemLookup,
        config: SessionConfig,
    ) -> None:
        """Fold one event into the state (``code`` from ``EVENT_CODE``, raw ids or NO_ID)."""
        self.n_events += 1
        self.last_ts = max(self.last_ts, ts)
        weight, cap, half_life = AFFINITY_WEIGHT[code], config.max_items, config.half_life_s
        category = UNKNOWN
        if product != NO_ID:
            category, price = lookup.product(product)
            if weight:
                _add(self.products, product, weight, ts, half_life, cap)
            if weight > 0 and price > 0:
                bump(self.price_sum, weight * math.log(price), ts, half_life)
                bump(self.price_weight, weight, ts, half_life)
        if streamer != NO_ID:
            if product == NO_ID:
                category = lookup.streamer(streamer)
            if weight:
                _add(self.rooms, streamer, weight, ts, half_life, cap)
        if weight and category != UNKNOWN:
            _add(self.categories, category, weight, ts, half_life, cap)
        self._transition(code, ts, session, streamer, product, value, config)

    def _transition(self, code, ts, session, streamer, product, value, config) -> None:
        """Room, cart, coupon, purchase and follow bookkeeping."""
        cap = config.max_items
        if code == ENTER:
            self.room_session, self.room_streamer, self.room_enter_ts = session, streamer, ts
            self.visit_engagement = 0
        elif code == LEAVE and self.in_room(session, streamer):
            self.room_session = self.room_streamer = self.room_enter_ts = NO_ID
        elif code in ENGAGE and streamer != NO_ID:
            _add(self.engagement, streamer, 1.0, ts, config.engagement_half_life_s, cap)
            self.visit_engagement += self.in_room(session, streamer)
        elif code == CART:
            _touch(self.cart, product, ts, cap)
        elif code == PURCHASE:
            self.cart.pop(product, None)
            if self.coupons.pop(product, None) is None:
                self.coupons.pop(NO_ID, None)
            _touch(self.bought, product, ts, cap)
        elif code == REFUND:
            self.bought.pop(product, None)
        elif code == COUPON and value > 0:
            _touch(self.coupons, product, max(value, self.coupons.get(product, 0.0)), cap)
        elif code == FOLLOW:
            _touch(self.followed, streamer, ts, cap)

    def in_room(self, session: int, streamer: int) -> bool:
        """Whether the viewer is in this room (the session decides when both know it)."""
        if self.room_streamer == NO_ID:
            return False
        if session != NO_ID and self.room_session != NO_ID:
            return session == self.room_session
        return streamer == self.room_streamer

    def to_dict(self) -> dict:
        """Plain JSON-ready form; tables as lists so their update order survives."""
        out = {name: getattr(self, name) for name in ("last_ts", "n_events", "visit_engagement")}
        out["room"] = [self.room_session, self.room_streamer, self.room_enter_ts]
        out["price"] = [self.price_sum, self.price_weight]
        for name in self.TABLES:
            out[name] = [[k, v] for k, v in getattr(self, name).items()]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> SessionState:
        state = cls()
        state.last_ts, state.n_events = int(data["last_ts"]), int(data["n_events"])
        state.visit_engagement = int(data["visit_engagement"])
        state.room_session, state.room_streamer, state.room_enter_ts = map(int, data["room"])
        state.price_sum, state.price_weight = ([float(v), int(t)] for v, t in data["price"])
        for name in ("categories", "rooms", "products", "engagement"):
            setattr(state, name, {int(k): [float(v), int(t)] for k, (v, t) in data[name]})
        state.cart = {int(k): int(t) for k, t in data["cart"]}
        state.coupons = {int(k): float(v) for k, v in data["coupons"]}
        state.bought = {int(k): int(t) for k, t in data["bought"]}
        state.followed = {int(k): int(t) for k, t in data["followed"]}
        return state

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SessionState) and self.to_dict() == other.to_dict()

    __hash__ = None  # mutable
