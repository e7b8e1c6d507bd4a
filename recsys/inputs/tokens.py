"""Behaviour tokens: what each viewer did, in order, as one stream per user.

A token is an entity (a product or a live room, i.e. its streamer) with the action that touched
it (enter a room; click, cart or buy a product) and its time. Public datasets give item-only
streams (action ``interact``, no real times); a live-commerce world gives mixed streams of room
entries and product actions from its event table.

``TokenLog`` stores every user's stream in CSR form (rows are user indices, chronological within
a row). Entity indices follow each table's vocabulary (0 padding, 1 unknown, real 2..n-1), and
the vocabularies are built exactly as ``recsys.data.live`` builds them, so product and room
indices agree with the live splits' item indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.interactions import UserSequences
from recsys.data.live import (
    PRODUCT_EVENTS,
    availability_intervals,
    product_features,
    room_features,
)
from recsys.data.tables import LiveCommerceTables
from recsys.data.vocab import Vocab

# Token kinds: which entity table the token's entity index refers to.
PAD_KIND, PRODUCT, ROOM = 0, 1, 2
KIND_TABLES = {PRODUCT: "product", ROOM: "streamer"}
# Action codes; 0 is padding, 1 is an item-only interaction (public datasets).
ACTIONS: tuple[str, ...] = ("pad", "interact", "enter", *PRODUCT_EVENTS)
ACTION_CODE = {name: code for code, name in enumerate(ACTIONS)}
# Time-gap buckets: 0 padding, 1 first token or no real time, 2 + floor(log2(1 + gap seconds)).
GAP_PAD, GAP_UNKNOWN, GAP_FIRST_BUCKET = 0, 1, 2


@dataclass(frozen=True)
class TokenLog:
    """Chronological token streams of every user (CSR over user indices)."""

    indptr: np.ndarray  # (n_users + 1,) int64
    kind: np.ndarray  # (N,) int64 PRODUCT or ROOM
    entity: np.ndarray  # (N,) int64 index in the kind's vocabulary
    action: np.ndarray  # (N,) int64 ACTION_CODE value
    ts: np.ndarray  # (N,) int64 time (or order key when ``timed`` is False)
    timed: bool  # whether ``ts`` are real times, so gaps between tokens mean something

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def __len__(self) -> int:
        return len(self.kind)

    @classmethod
    def from_sequences(cls, seqs: UserSequences, *, kind: int = PRODUCT) -> TokenLog:
        """Item-only streams from interaction sequences (action ``interact``, no real times)."""
        n = len(seqs.items)
        return cls(
            indptr=seqs.indptr,
            kind=np.full(n, kind, dtype=np.int64),
            entity=seqs.items.astype(np.int64, copy=False),
            action=np.full(n, ACTION_CODE["interact"], dtype=np.int64),
            ts=seqs.ts,
            timed=False,
        )

    @classmethod
    def from_events(
        cls,
        *,
        user: np.ndarray,
        kind: np.ndarray,
        entity: np.ndarray,
        action: np.ndarray,
        ts: np.ndarray,
        n_users: int,
        timed: bool = True,
    ) -> TokenLog:
        """Streams from unordered token rows (stable: equal times keep input order)."""
        order = np.lexsort((np.arange(len(user)), ts, user))
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(user, minlength=n_users), out=indptr[1:])
        return cls(indptr, kind[order], entity[order], action[order], ts[order], timed)

    def until(self, horizon: int) -> TokenLog:
        """Only the tokens at or before ``horizon`` (every user's prefix)."""
        keep = self.ts <= horizon
        row = np.repeat(np.arange(self.n_users), self.lengths)
        indptr = np.zeros_like(self.indptr)
        np.cumsum(np.bincount(row[keep], minlength=self.n_users), out=indptr[1:])
        sub = (self.kind[keep], self.entity[keep], self.action[keep], self.ts[keep])
        return TokenLog(indptr, *sub, timed=self.timed)

    def first_in_visit(self) -> np.ndarray:
        """(N,) whether each token is a fresh choice, the unit evaluation counts as one target.

        A click, cart and purchase of one product within one room visit (the tokens between two
        room entries) is one choice, as is entering the same room again right after leaving it;
        only the first token of each counts. Item-only streams: every token.
        """
        fresh = np.ones(len(self), dtype=bool)
        if not np.any(self.kind == ROOM):
            return fresh
        user = np.repeat(np.arange(self.n_users), self.lengths)
        room = self.kind == ROOM
        visit = np.cumsum(room)  # increases at every entry, so it also separates users
        product = np.flatnonzero(~room)
        keys = (user[product], visit[product], self.entity[product])
        order = np.lexsort((product, *reversed(keys)))
        same = np.ones(len(order), dtype=bool)
        same[0:1] = False
        for k in keys:
            same[1:] &= k[order][1:] == k[order][:-1]
        fresh[product[order[same]]] = False
        rooms = np.flatnonzero(room)
        repeat = (user[rooms][1:] == user[rooms][:-1]) & (
            self.entity[rooms][1:] == self.entity[rooms][:-1]
        )
        fresh[rooms[1:][repeat]] = False
        return fresh

    def gap_buckets(self, n_buckets: int) -> np.ndarray:
        """(N,) bucket of the time since the user's previous token (log2 seconds)."""
        buckets = np.full(len(self), GAP_UNKNOWN, dtype=np.int64)
        if not self.timed or n_buckets <= GAP_FIRST_BUCKET:
            return buckets
        has_prev = np.ones(len(self), dtype=bool)
        has_prev[self.indptr[:-1][self.lengths > 0]] = False
        gap = np.diff(self.ts, prepend=self.ts[:1]).clip(min=0).astype(np.float64)
        raw = GAP_FIRST_BUCKET + np.floor(np.log2(1.0 + gap)).astype(np.int64)
        buckets[has_prev] = np.minimum(raw[has_prev], n_buckets - 1)
        return buckets


@dataclass(frozen=True)
class WorldVocabs:
    user: Vocab
    product: Vocab
    streamer: Vocab


def world_vocabs(tables: LiveCommerceTables) -> WorldVocabs:
    """The vocabularies ``recsys.data.live`` builds, so indices agree with its splits."""
    return WorldVocabs(
        user=Vocab.build("user", tables.users["user_id"].to_numpy()),
        product=Vocab.build("product", tables.products["product_id"].to_numpy()),
        streamer=Vocab.build("streamer", tables.streamers["streamer_id"].to_numpy()),
    )


def world_tokens(tables: LiveCommerceTables, vocabs: WorldVocabs | None = None) -> TokenLog:
    """Room entries and product clicks, carts and purchases of every user, in time order."""
    vocabs = vocabs or world_vocabs(tables)
    ev = tables.events
    ev = ev.loc[ev["event_type"].isin(("enter", *PRODUCT_EVENTS))]
    ev = ev.sort_values(["ts", "event_id"], kind="stable")
    is_room = (ev["event_type"] == "enter").to_numpy()
    field = np.where(is_room, ev["streamer_id"].isna(), ev["product_id"].isna())
    if field.any():
        row = ev.iloc[int(np.flatnonzero(field)[0])]
        need = "streamer_id" if row["event_type"] == "enter" else "product_id"
        raise ValueError(
            f"table 'events', event_id {row['event_id']} ({row['event_type']}): "
            f"field {need!r} is required and missing"
        )
    streamer = vocabs.streamer.encode(ev["streamer_id"].fillna(-1).to_numpy(np.int64))
    product = vocabs.product.encode(ev["product_id"].fillna(-1).to_numpy(np.int64))
    entity = np.where(is_room, streamer, product)
    user = vocabs.user.encode(ev["user_id"].to_numpy(np.int64))
    unknown = np.flatnonzero((entity < 2) | (user < 2))
    if len(unknown):
        row = ev.iloc[int(unknown[0])]
        raise ValueError(
            f"table 'events', event_id {row['event_id']}: names a user, product or streamer "
            "missing from its entity table"
        )
    codes = ev["event_type"].map(ACTION_CODE).to_numpy(np.int64)
    return TokenLog.from_events(
        user=user,
        kind=np.where(is_room, ROOM, PRODUCT).astype(np.int64),
        entity=entity.astype(np.int64),
        action=codes,
        ts=ev["ts"].to_numpy(np.int64),
        n_users=len(vocabs.user),
    )


@dataclass(frozen=True)
class TokenContext:
    """A world's full behaviour streams, beyond the interactions of one recommendation target.

    Models condition on every token up to the time their history reaches, so a next-product
    model also sees which rooms the viewer entered, and the other way round. ``shelf`` lists
    which streamer showed which product when, for the product's seller (``sellers``).
    """

    log: TokenLog
    n_products: int  # vocabulary sizes (padding and unknown included)
    n_streamers: int
    side_features: dict[str, dict[str, np.ndarray]]  # entity table -> feature -> (n,) codes
    vocabs: WorldVocabs
    shelf: dict[str, np.ndarray]  # "product", "streamer", "start": one row per showcase slot
    # head -> (entity, start, end) intervals when it was available (on a live shelf, on air)
    availability: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]

    def sellers(self, horizon: int) -> np.ndarray:
        """(n_products,) the streamer that showed each product most often in sessions started at
        or before ``horizon`` (ties: the lower index; 0 when none), so no later shelf leaks in."""
        shown = self.shelf["start"] <= horizon
        pairs = self.shelf["product"][shown] * self.n_streamers + self.shelf["streamer"][shown]
        keys, counts = np.unique(pairs, return_counts=True)
        product, streamer = keys // self.n_streamers, keys % self.n_streamers
        order = np.lexsort((streamer, -counts, product))  # per product: most shown first
        product, streamer = product[order], streamer[order]
        first = np.ones(len(product), dtype=bool)
        first[1:] = product[1:] != product[:-1]
        out = np.zeros(self.n_products, dtype=np.int64)
        out[product[first]] = streamer[first]
        return out


def world_context(tables: LiveCommerceTables) -> TokenContext:
    """The token streams, sizes, categorical side features and shelves of a live-commerce world."""
    vocabs = world_vocabs(tables)
    sessions = tables.live_sessions[["session_id", "streamer_id", "start_ts"]]
    shown = tables.showcase[["session_id", "product_id"]].merge(
        sessions.rename(columns={"start_ts": "session_start"}), on="session_id"
    )
    shelf = {
        "product": vocabs.product.encode(shown["product_id"].to_numpy(np.int64)),
        "streamer": vocabs.streamer.encode(shown["streamer_id"].to_numpy(np.int64)),
        "start": shown["session_start"].to_numpy(np.int64),
    }
    return TokenContext(
        log=world_tokens(tables, vocabs),
        n_products=len(vocabs.product),
        n_streamers=len(vocabs.streamer),
        side_features={
            "product": product_features(tables, vocabs.product).categorical,
            "streamer": room_features(tables, vocabs.streamer).categorical,
        },
        vocabs=vocabs,
        shelf=shelf,
        availability={
            "product": availability_intervals(tables, "product", vocabs.product),
            "streamer": availability_intervals(tables, "room", vocabs.streamer),
        },
    )
