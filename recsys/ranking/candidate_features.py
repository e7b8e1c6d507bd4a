"""Features of (request, candidate product) pairs for the ranker, point in time.

A pair is a viewer ``user_id`` at time ``ts`` and a live product ``product_id`` on the shelf of
room ``streamer_id`` / ``session_id``. Every feature reads only what was known before ``ts``:
events strictly before it, the live schedule (which room is on air and which product it
presents at ``ts`` is public the moment it happens) and, when given, the platform's coupon drops
live at ``ts``. Columns, in ``FEATURE_NAMES`` order:

* ``retrieval_score``, ``sequential_score``: scores of upstream models passed in as pair
  columns; absent or NaN -> 0 with ``has_retrieval_score`` / ``has_sequential_score`` 0;
* the 17 session features of ``recsys.ranking.features`` (the same code the live service runs);
* ``live_now`` (the room is on air and the product on its shelf), ``on_show`` (the streamer is
  presenting it now);
* ``streamer_trust``: the viewer's trust in the room's streamer as shown by past behaviour:
  ``trust_purchase`` per purchase from the streamer, ``trust_follow`` per follow,
  ``trust_visit`` per visit to the streamer's room and ``trust_long_visit`` more per visit of
  at least ``long_dwell_s`` (counted when it ended);
  ``trusted_streamer`` = trust >= ``trust_threshold``; ``kol_presenting_now`` = a trusted
  streamer is presenting this product now; ``followed_streamer`` = ever followed before ts;
* ``room_entries_recent`` = log1p(entries into the room in the last ``popularity_window_s``),
  ``product_clicks_recent`` = log1p(clicks on the product in that room in that window);
* ``coupon_live`` (value of a coupon live on the product now; without a drop table, the mean
  value claimed on it in the last ``coupon_window_s`` while on show) and ``coupon_live_depth``
  (value / price);
* ``log_price``; ``price_fit`` = exp(-d^2 / 2 bw^2) with d = log price minus the viewer's
  weighted mean log price of past clicks, carts and purchases (0 without history),
  ``log_price_vs_profile`` = d, ``has_price_history``;
* ``profile_category_share`` (share of the viewer's past product weight in the product's
  category) and ``profile_events`` = log1p(past product events).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recsys.data.tables import LiveCommerceTables
from recsys.data.timeline import KeyedIntervals, KeyedTimeline, common_value, pair_codes
from recsys.ranking.events import EVENT_CODE, NO_ID, id_column
from recsys.ranking.features import FEATURE_NAMES as SESSION_FEATURES
from recsys.ranking.lookup import ItemLookup
from recsys.ranking.offline import session_features_offline
from recsys.ranking.pairs import PAIR_COLUMNS, SCORE_COLUMNS, IdIndex, Pairs
from recsys.ranking.session import AFFINITY_WEIGHT, SessionConfig

UPSTREAM = ("retrieval_score", "has_retrieval_score", "sequential_score", "has_sequential_score")
CONTEXT = (
    "live_now", "on_show", "streamer_trust", "trusted_streamer", "kol_presenting_now",
    "followed_streamer", "room_entries_recent", "product_clicks_recent", "coupon_live",
    "coupon_live_depth", "log_price", "price_fit", "log_price_vs_profile", "has_price_history",
    "profile_category_share", "profile_events",
)  # fmt: skip
FEATURE_NAMES: tuple[str, ...] = (*UPSTREAM, *SESSION_FEATURES, *CONTEXT)
_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}
PRODUCT_EVENTS = ("click", "cart", "purchase")


@dataclass(frozen=True)
class CandidateFeatureConfig:
    popularity_window_s: int = 600
    coupon_window_s: int = 600
    long_dwell_s: float = 600.0
    trust_purchase: float = 2.0
    trust_follow: float = 2.0
    trust_visit: float = 0.5
    trust_long_visit: float = 1.0
    trust_threshold: float = 3.0
    price_bandwidth: float = 0.5  # in log price
    session: SessionConfig = field(default_factory=SessionConfig)


@dataclass(frozen=True)
class FeatureMatrix:
    """Named float32 feature columns of candidate rows."""

    names: tuple[str, ...]
    values: np.ndarray  # (n, len(names)) float32

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.values.shape[1] != len(self.names):
            raise ValueError(
                f"FeatureMatrix: {self.values.shape} values for {len(self.names)} names"
            )

    def __len__(self) -> int:
        return len(self.values)

    def column(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise KeyError(f"no feature {name!r}; features are {list(self.names)}")
        return self.values[:, self.names.index(name)]

    def select(self, names) -> FeatureMatrix:
        names = tuple(names)
        missing = [n for n in names if n not in self.names]
        if missing:
            raise KeyError(f"no features {missing}; features are {list(self.names)}")
        return FeatureMatrix(names, self.values[:, [self.names.index(n) for n in names]])

    def take(self, rows) -> FeatureMatrix:
        return FeatureMatrix(self.names, self.values[rows])

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.values, columns=list(self.names))


def _of_type(events: pd.DataFrame, *types: str) -> pd.DataFrame:
    return events.loc[events["event_type"].isin(types)]


class CandidateFeaturizer:
    """Indexes a world's tables once; ``transform`` then answers any batch of pairs."""

    def __init__(
        self,
        tables: LiveCommerceTables,
        *,
        coupon_drops: pd.DataFrame | None = None,
        config: CandidateFeatureConfig | None = None,
    ) -> None:
        self.config = c = config or CandidateFeatureConfig()
        self.lookup = ItemLookup.from_tables(tables.products, tables.streamers)
        self.events = ev = tables.events
        products = tables.products["product_id"].to_numpy(np.int64)
        self.users = IdIndex(pd.unique(ev["user_id"].to_numpy(np.int64)), table="events",
                             field="user_id")  # fmt: skip
        self.streamers = IdIndex(tables.streamers["streamer_id"].to_numpy(np.int64),
                                 table="streamers", field="streamer_id")  # fmt: skip
        self.products = IdIndex(products, table="products", field="product_id")
        self.sessions = IdIndex(tables.live_sessions["session_id"].to_numpy(np.int64),
                                table="live_sessions", field="session_id")  # fmt: skip
        self.session_live = tables.live_sessions[["start_ts", "end_ts"]].to_numpy(np.int64)
        self.category = self.lookup.products(products)[0]
        self.price = tables.products["price"].to_numpy(np.float64)
        slots = self._frame_pairs(tables.showcase)
        self.slots = KeyedIntervals(slots, tables.showcase["start_ts"], tables.showcase["end_ts"])
        self._index_trust(ev, c)
        self._index_profile(ev)
        self._index_rooms(ev, coupon_drops)

    def _pairs(self, session_id: np.ndarray, product_id: np.ndarray) -> np.ndarray:
        """(session, product) pair codes of raw ids (-1 where either is unknown)."""
        s, p = self.sessions.positions(session_id), self.products.positions(product_id)
        return pair_codes(s, p, len(self.products))

    def _frame_pairs(self, frame: pd.DataFrame) -> np.ndarray:
        return self._pairs(id_column(frame, "session_id"), id_column(frame, "product_id"))

    def _user_streamer(self, user: np.ndarray, streamer_id: np.ndarray) -> np.ndarray:
        """(viewer, streamer) pair codes of viewer positions and raw streamer ids."""
        return pair_codes(user, self.streamers.positions(streamer_id), len(self.streamers))

    def _index_trust(self, ev: pd.DataFrame, c: CandidateFeatureConfig) -> None:
        """Timeline of trust weight and follows per (viewer, streamer)."""
        long = _of_type(ev, "leave")
        long = long.loc[long["dwell_s"].to_numpy(np.float64) >= c.long_dwell_s]
        parts = [
            (_of_type(ev, "purchase"), c.trust_purchase, 0.0),
            (_of_type(ev, "follow"), c.trust_follow, 1.0),
            (_of_type(ev, "enter"), c.trust_visit, 0.0),
            (long, c.trust_long_visit, 0.0),
        ]
        frames = [p[0] for p in parts]
        trust = np.concatenate([np.full(len(f), w) for f, w, _ in parts])
        follow = np.concatenate([np.full(len(f), v) for f, _, v in parts])
        keys = [
            self._user_streamer(
                self.users.positions(f["user_id"].to_numpy(np.int64)), id_column(f, "streamer_id")
            )
            for f in frames
        ]
        self.trust = KeyedTimeline(
            np.concatenate(keys),
            np.concatenate([f["ts"].to_numpy(np.int64) for f in frames]),
            np.stack([trust, follow], axis=1),
        )

    def _index_profile(self, ev: pd.DataFrame) -> None:
        """Timelines of the viewer's product events: weight, log price, per category."""
        pe = _of_type(ev, *PRODUCT_EVENTS)
        pe = pe.loc[pe["product_id"].notna()]
        p = self.products.positions(id_column(pe, "product_id"))
        pe, p = pe.loc[p >= 0], p[p >= 0]
        weight = np.asarray(AFFINITY_WEIGHT)[pe["event_type"].map(EVENT_CODE).to_numpy(np.int64)]
        user = self.users.positions(pe["user_id"].to_numpy(np.int64))
        ts = pe["ts"].to_numpy(np.int64)
        values = np.stack([weight, weight * np.log(self.price[p]), np.ones(len(p))], axis=1)
        self.profile = KeyedTimeline(user, ts, values)
        n_cat = len(self.lookup.categories) + 1  # + 1: unknown category (-1) gets the last code
        self.profile_category = KeyedTimeline(
            pair_codes(user, self.category[p] % n_cat, n_cat), ts, weight
        )

    def _index_rooms(self, ev: pd.DataFrame, coupon_drops: pd.DataFrame | None) -> None:
        """Timelines of what happens in the rooms: entries, clicks, coupons."""
        enter = _of_type(ev, "enter")
        self.entries = KeyedTimeline(
            self.sessions.positions(id_column(enter, "session_id")), enter["ts"]
        )
        clicks = _of_type(ev, "click")
        self.clicks = KeyedTimeline(self._frame_pairs(clicks), clicks["ts"])
        self.drops = self.claims = None
        if coupon_drops is not None:
            self.drops = KeyedIntervals(
                self._frame_pairs(coupon_drops), coupon_drops["start_ts"], coupon_drops["end_ts"]
            )
            self.drop_value = coupon_drops["coupon_value"].to_numpy(np.float64)
        else:
            claims = _of_type(ev, "coupon_claim")
            value = np.stack([np.ones(len(claims)), claims["coupon_value"].to_numpy(np.float64)], 1)
            self.claims = KeyedTimeline(self._frame_pairs(claims), claims["ts"], value)

    def transform(
        self, pairs: pd.DataFrame | Pairs, session: np.ndarray | None = None
    ) -> FeatureMatrix:
        """``FEATURE_NAMES`` features of each pair, in order. A frame holds ``PAIR_COLUMNS``
        and optionally ``retrieval_score`` / ``sequential_score``; a request's pairs come as
        ``Pairs``, which skips the frame's per-call cost. ``session``: the pairs' session
        features computed elsewhere ((n, 17), e.g. by a live ``SessionStore`` from events the
        tables do not hold), instead of replaying the tables' events."""
        if not isinstance(pairs, Pairs):
            pairs = Pairs.from_frame(pairs)
        n = len(pairs)
        out = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float32)
        for name, values in self._upstream(pairs).items():
            out[:, _COLUMN[name]] = values
        if session is None:
            session = self._session(pairs.frame())
        elif session.shape != (n, len(SESSION_FEATURES)):
            raise ValueError(
                f"session features: expected {(n, len(SESSION_FEATURES))}, got {session.shape}"
            )
        out[:, len(UPSTREAM) : len(UPSTREAM) + len(SESSION_FEATURES)] = session
        for name, values in self._context(pairs).items():
            out[:, _COLUMN[name]] = values
        return FeatureMatrix(FEATURE_NAMES, out)

    @staticmethod
    def _upstream(pairs: Pairs) -> dict[str, np.ndarray]:
        out = {}
        for name in SCORE_COLUMNS:
            values = getattr(pairs, name)
            if values is None:
                values = np.full(len(pairs), np.nan)
            known = np.isfinite(values)
            out[name], out[f"has_{name}"] = np.where(known, values, 0.0), known
        return out

    def _session(self, pairs: pd.DataFrame) -> np.ndarray:
        queries = pairs[list(PAIR_COLUMNS)].assign(kind="product")
        frame = session_features_offline(
            self.events, queries, lookup=self.lookup, config=self.config.session
        )
        return frame.to_numpy(np.float64)

    def _context(self, pairs: Pairs) -> dict[str, np.ndarray]:
        c, ts = self.config, common_value(pairs.ts)
        product = self._product_positions(pairs)
        s = self.sessions.positions(pairs.session_id)
        pair = pair_codes(s, product, len(self.products))
        user = self.users.positions_of_one(pairs.user_id)  # one viewer per online request
        live = self.session_live[np.maximum(s, 0)]
        on_air = (s >= 0) & (live[:, 0] <= ts) & (ts <= live[:, 1])
        slot, on_shelf = self.slots.covering_known(pair, ts)  # a pair with slots is on a shelf
        live_now = on_air & on_shelf
        on_show = slot >= 0
        trust = self.trust.sum_before(self._user_streamer(user, pairs.streamer_id), ts)  # (n, 2)
        trusted = trust[:, 0] >= c.trust_threshold
        window = ts - c.popularity_window_s
        out = {
            "live_now": live_now,
            "on_show": on_show,
            "streamer_trust": trust[:, 0],
            "trusted_streamer": trusted,
            "kol_presenting_now": trusted & on_show,
            "followed_streamer": trust[:, 1] > 0,
            "room_entries_recent": np.log1p(self.entries.sum_between(s, window, ts)),
            "product_clicks_recent": np.log1p(self.clicks.sum_between(pair, window, ts)),
        }
        price = self.price[product]
        return out | self._coupon(pair, ts, on_show, price) | self._profile(user, product, ts)

    def _product_positions(self, pairs: Pairs) -> np.ndarray:
        """Position of each pair's product in table 'products'; a clear error for an unknown one."""
        p = self.products.positions(pairs.product_id)
        if np.any(p < 0):
            row = int(np.flatnonzero(p < 0)[0])
            raw = int(pairs.product_id[row])
            shown = "<NA>" if raw == NO_ID else raw  # how a frame shows a missing id
            raise ValueError(
                f"candidate pairs row {row}: product_id {shown} is not in table 'products'"
            )
        return p

    def _coupon(
        self, pair: np.ndarray, ts: np.ndarray, on_show: np.ndarray, price: np.ndarray
    ) -> dict[str, np.ndarray]:
        if self.drops is not None:
            row = self.drops.covering(pair, ts)
            value = np.where(row >= 0, self.drop_value[np.maximum(row, 0)], 0.0)
        else:
            seen = self.claims.sum_between(pair, ts - self.config.coupon_window_s, ts)
            value = np.where(on_show & (seen[:, 0] > 0), seen[:, 1] / np.maximum(seen[:, 0], 1), 0)
        return {"coupon_live": value, "coupon_live_depth": np.minimum(value / price, 1.0)}

    def _profile(
        self, user: np.ndarray, product: np.ndarray, ts: np.ndarray
    ) -> dict[str, np.ndarray]:
        category, price = self.category[product], self.price[product]
        past = self.profile.sum_before(user, ts)  # (n, 3): weight, weight * log price, count
        known = past[:, 0] > 0
        mean = np.where(known, past[:, 1] / np.maximum(past[:, 0], 1e-12), 0.0)
        gap = np.where(known, np.log(price) - mean, 0.0)
        n_cat = len(self.lookup.categories) + 1
        in_category = self.profile_category.sum_before(
            pair_codes(user, category % n_cat, n_cat), ts
        )
        bw = self.config.price_bandwidth
        return {
            "log_price": np.log(price),
            "price_fit": np.where(known, np.exp(-0.5 * (gap / bw) ** 2), 0.0),
            "log_price_vs_profile": gap,
            "has_price_history": known,
            "profile_category_share": np.where(
                known, in_category / np.maximum(past[:, 0], 1e-12), 0
            ),
            "profile_events": np.log1p(past[:, 2]),
        }
