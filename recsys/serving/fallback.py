"""``PopularityLiveService``: what is live now, by recent popularity, boosted by the session.

The recommender every viewer can get, known or not, and the one the service runs before a
trained pipeline is plugged in. For each live room and product::

    score = log(1 + recent popularity) + session boosts

where the boosts (``Boosts``) read the viewer's session features (``recsys.ranking``): share
of recent attention on the item's category, affinity to the room or product, being in the room
that shows the product, following the room, the product in the cart or under a held coupon,
the product's slot running now; a product bought this session is pushed down. Each item says
why it ranks (``reasons``). A product on several live shelves is offered once, from the shelf
where it scores best. Viewers missing from the users table are flagged ``cold_start``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from recsys.data.tables import LiveCommerceTables
from recsys.ranking.events import SessionEvent, event_columns
from recsys.ranking.features import FEATURE_INDEX as F
from recsys.ranking.features import Candidates, candidate_category_price
from recsys.ranking.lookup import ItemLookup
from recsys.ranking.session import SessionConfig
from recsys.ranking.store import SessionStore
from recsys.serving.live import LiveCatalog, LiveRooms
from recsys.serving.popularity import DecayedPopularity
from recsys.serving.protocol import (
    ITEM_KINDS,
    Recommendation,
    RecommendedItem,
    RecommenderService,
    check_request,
)

INTEREST_SHARE = 0.25  # category share of recent attention worth naming as a reason
POPULAR_TOP = 3  # the most popular live items of a kind say so


@dataclass(frozen=True)
class Boosts:
    """Score added per session feature (category, coupon: times a share / depth in [0, 1])."""

    category: float = 2.0
    affinity: float = 0.5  # times log(1 + decayed affinity)
    in_room: float = 1.0
    followed: float = 1.0
    in_cart: float = 1.0
    coupon: float = 2.0
    on_show: float = 0.5
    bought: float = -3.0

    def room(self, x: np.ndarray) -> np.ndarray:
        """(R,) boost of each live room from its (R, F) session features."""
        return (
            self.category * x[:, F["category_share"]]
            + self.affinity * np.log1p(x[:, F["room_affinity"]])
            + self.followed * x[:, F["followed"]]
            + self.in_room * x[:, F["in_room"]]
        )


def session_reasons(
    kind: str, x: np.ndarray, category: str | None, on_show: bool, popular: bool
) -> tuple[str, ...]:
    """Plain-language reasons a room or product ranks, from its session features."""
    out = []
    if x[F["in_room"]]:
        out.append("you are watching this room" if kind == "room" else "in the room you watch")
    if category is not None and x[F["category_share"]] >= INTEREST_SHARE:
        out.append(f"matches your recent interest in {category}")
    if x[F["followed"]]:
        out.append("you followed this streamer")
    if x[F["in_cart"]]:
        out.append("in your cart")
    if x[F["coupon_value"]] > 0:
        out.append(f"you hold a {x[F['coupon_value']]:g} coupon for it")
    if x[F["product_affinity" if kind == "product" else "room_affinity"]] > 0:
        out.append("you looked at it recently")
    if on_show:
        out.append("on show now")
    if popular:
        out.append("popular right now")
    return tuple(out) or ("live now",)


class PopularityLiveService(RecommenderService):
    """Live rooms and products ranked by recent popularity plus session boosts."""

    def __init__(
        self,
        *,
        live: LiveCatalog,
        lookup: ItemLookup,
        sessions: SessionStore,
        popularity: DecayedPopularity,
        known_users: Iterable[int],
        boosts: Boosts | None = None,
    ) -> None:
        self.live, self.lookup, self.sessions = live, lookup, sessions
        self.popularity = popularity
        self.known_users = frozenset(int(u) for u in known_users)
        self.boosts = boosts or Boosts()
        self._version = 0  # ingested batches so far: the anonymous ranking's cache key
        self._anonymous: tuple[tuple, list[RecommendedItem]] | None = None

    @classmethod
    def from_tables(
        cls,
        tables: LiveCommerceTables,
        *,
        until: int,
        session_config: SessionConfig | None = None,
        popularity_half_life_s: float = 6 * 3600.0,
        boosts: Boosts | None = None,
    ) -> PopularityLiveService:
        """A service as of ``until``: popularity from the events before it, and the sessions
        of viewers active within the session TTL before it, replayed into the store."""
        lookup = ItemLookup.from_tables(tables.products, tables.streamers)
        sessions = SessionStore(lookup=lookup, config=session_config)
        history = tables.events.loc[tables.events["ts"] < until]
        recent = history.loc[history["ts"] >= until - sessions.config.ttl_s]
        sessions.replay(event_columns(recent))
        return cls(
            live=LiveCatalog(tables.live_sessions, tables.showcase),
            lookup=lookup,
            sessions=sessions,
            popularity=DecayedPopularity.from_events(history, half_life_s=popularity_half_life_s),
            known_users=tables.users["user_id"].to_numpy(np.int64).tolist(),
            boosts=boosts,
        )

    def recommend(
        self, user: int, now: int, k: int, kinds: Sequence[str] = ITEM_KINDS
    ) -> Recommendation:
        check_request(k, kinds)
        cold = user not in self.known_users
        if self.sessions.peek(user, now) is None:
            # Without a session the ranking is the same for every viewer: rank once per
            # (second, k, kinds) until the next ingested event changes popularity.
            key = (now, k, tuple(kinds), self._version)
            cached = self._anonymous
            if cached is None or cached[0] != key:
                cached = (key, self._rank(user, now, k, kinds))
                self._anonymous = cached
            return Recommendation(user, now, cold, list(cached[1]))
        return Recommendation(user, now, cold, self._rank(user, now, k, kinds))

    def _rank(self, user: int, now: int, k: int, kinds: Sequence[str]) -> list[RecommendedItem]:
        items: list[RecommendedItem] = []
        if "room" in kinds:
            items += self.rank_rooms(user, now, k)
        if "product" in kinds:
            items += self._rank_products(user, now, k)
        return items

    def ingest(self, events: Sequence[SessionEvent]) -> int:
        for event in events:
            self.sessions.update(event)
            self.popularity.add(event)
        self._version += 1
        return len(events)

    def health(self, now: int) -> dict:
        return {
            "recommender": "popularity-live",
            "live_rooms": len(self.live.rooms(now).streamer),
            "sessions": len(self.sessions),
            "known_users": len(self.known_users),
        }

    def rank_rooms(
        self, user: int, now: int, k: int, base: Callable[[LiveRooms], np.ndarray] | None = None
    ) -> list[RecommendedItem]:
        """The top ``k`` live rooms by ``base`` (default: log(1 + recent popularity)) plus the
        session boosts."""
        rooms = self.live.rooms(now)
        if len(rooms.streamer) == 0:
            return []
        cands = Candidates.rooms(rooms.streamer, rooms.session)
        x = self.sessions.features(user, cands, now)
        pop = self.popularity.values("room", rooms.streamer, now)
        score = (np.log1p(pop) if base is None else base(rooms)) + self.boosts.room(x)
        top = np.lexsort((rooms.streamer, -score))[:k]
        on_show = np.zeros(len(score), dtype=bool)
        return self._items("room", cands, rooms.streamer, score, x, pop, on_show, top)

    def _rank_products(self, user: int, now: int, k: int) -> list[RecommendedItem]:
        shelf = self.live.products(now)
        cands = Candidates.products(shelf.product, shelf.streamer, shelf.session)
        x = self.sessions.features(user, cands, now)
        b = self.boosts
        pop = self.popularity.values("product", shelf.product, now)
        score = (
            np.log1p(pop)
            + b.category * x[:, F["category_share"]]
            + b.affinity * np.log1p(x[:, F["product_affinity"]])
            + b.in_room * x[:, F["in_room"]]
            + b.followed * x[:, F["followed"]]
            + b.in_cart * x[:, F["in_cart"]]
            + b.coupon * np.minimum(x[:, F["coupon_depth"]], 1.0)
            + b.on_show * shelf.on_show
            + b.bought * x[:, F["bought_in_session"]]
        )
        order = np.lexsort((shelf.session, shelf.product, -score))
        _, first = np.unique(shelf.product[order], return_index=True)  # best shelf per product
        top = order[np.sort(first)][:k]
        return self._items("product", cands, shelf.product, score, x, pop, shelf.on_show, top)

    def _items(self, kind, cands, ids, score, x, pop, on_show, top) -> list[RecommendedItem]:
        category, _ = candidate_category_price(cands.take(top), self.lookup)
        most = np.argsort(-pop, kind="stable")[:POPULAR_TOP]
        popular = set(most[pop[most] > 0].tolist())
        names = self.lookup.categories
        return [
            RecommendedItem(
                kind=kind,
                id=int(ids[i]),
                score=float(score[i]),
                reasons=session_reasons(
                    kind, x[i], names[c] if c >= 0 else None, bool(on_show[i]), i in popular
                ),
                streamer=int(cands.streamer[i]),
                session=int(cands.session[i]),
            )
            for i, c in zip(top.tolist(), category.tolist(), strict=True)
        ]
