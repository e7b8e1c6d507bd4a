"""What a live-commerce world tells about a viewer or a room at a moment, point-in-time correct.

The two-tower model's query and room towers read, besides the behaviour tokens
(``recsys.inputs.tokens``), four things only the world's tables hold:

* the room a viewer is in at time ``t``: the streamer of the viewer's latest ``enter`` strictly
  before ``t``, unless a ``leave`` came after it (still strictly before ``t``);
* the product a room presents at ``t``: the latest showcase segment of the streamer started at
  or before ``t`` (the room's public state, not the viewer's behaviour);
* demographics: the users table's categorical columns as codes (0 = missing);
* profile features (``recsys.profiling.profile_matrix``) from snapshots, each built only from the
  events strictly before its cut time, so a training example at ``t`` reads the latest snapshot
  cut at or before ``t`` and never an event at or after it.

Every lookup is vectorised over queries: per-user event times are searched with one
``searchsorted`` over ``(user, time)`` keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

from recsys.data.features import category_codes
from recsys.data.live import product_features
from recsys.data.tables import LiveCommerceTables
from recsys.data.vocab import Vocab
from recsys.profiling import Profiler, profile_matrix

# (user, time) -> one sortable int64: user in the high bits, seconds since ``TIME_ORIGIN`` low.
TIME_BITS = 34
DEMOGRAPHICS = ("age_band", "gender", "region")
DAY_S = 86_400


def check_times(ts: np.ndarray, where: str) -> None:
    """Data times must fit the key range (query times are clipped to it instead)."""
    if len(ts) and (ts.min() < 0 or ts.max() >= 2**TIME_BITS):
        raise ValueError(
            f"{where}: times must lie in [0, 2**{TIME_BITS}), got {ts.min()}..{ts.max()}"
        )


def time_keys(user: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Keys ordering (user, time) pairs lexicographically; times are clipped to the key range."""
    user = np.asarray(user, dtype=np.int64)
    if len(user) and (user.min() < 0 or user.max() >= 2 ** (63 - TIME_BITS)):
        raise ValueError(f"user indices must lie in [0, 2**{63 - TIME_BITS})")
    t = np.clip(np.asarray(ts, dtype=np.int64), 0, 2**TIME_BITS - 1)
    return (user << TIME_BITS) | t


def count_before(keys: np.ndarray, user: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Absolute end position of each user's events strictly before ``before`` in sorted keys."""
    return np.searchsorted(keys, time_keys(user, before), side="left")


@dataclass(frozen=True)
class Visits:
    """Room entries and exits of every user, sorted by (user, time, event order)."""

    keys: np.ndarray  # (V,) time_keys(user, ts)
    user: np.ndarray  # (V,)
    streamer: np.ndarray  # (V,) streamer index entered; 0 for an exit

    @classmethod
    def from_tables(cls, tables: LiveCommerceTables, users: Vocab, streamers: Vocab) -> Visits:
        ev = tables.events
        ev = ev.loc[ev["event_type"].isin(("enter", "leave"))]
        ev = ev.sort_values(["ts", "event_id"], kind="stable")
        user = users.encode(ev["user_id"].to_numpy(np.int64))
        enter = (ev["event_type"] == "enter").to_numpy()
        raw = ev["streamer_id"].fillna(-1).to_numpy(np.int64)
        streamer = np.where(enter, streamers.encode(raw), 0)
        bad = np.flatnonzero((user < 2) | (enter & (streamer < 2)))
        if len(bad):
            row = ev.iloc[int(bad[0])]
            raise ValueError(
                f"table 'events', event_id {row['event_id']} ({row['event_type']}): names a "
                "user or streamer missing from its entity table"
            )
        ts = ev["ts"].to_numpy(np.int64)
        check_times(ts, "table 'events'")
        order = np.argsort(time_keys(user, ts), kind="stable")
        return cls(time_keys(user, ts)[order], user[order], streamer[order])

    def room_at(self, user: np.ndarray, before: np.ndarray) -> np.ndarray:
        """(Q,) the streamer whose room each user was in just before ``before`` (0: none)."""
        pos = count_before(self.keys, user, before) - 1
        safe = np.maximum(pos, 0)
        found = (pos >= 0) & (self.user[safe] == np.asarray(user, dtype=np.int64))
        return np.where(found, self.streamer[safe], 0)


@dataclass(frozen=True)
class Showcase:
    """Showcase segments by (streamer, start): which product each room presented when."""

    keys: np.ndarray  # (S,) time_keys(streamer, start)
    streamer: np.ndarray
    product: np.ndarray

    @classmethod
    def from_tables(cls, tables: LiveCommerceTables, streamers: Vocab, products: Vocab) -> Showcase:
        seg = tables.showcase.merge(
            tables.live_sessions[["session_id", "streamer_id"]],
            on="session_id",
            how="left",
            validate="many_to_one",
        )
        if seg["streamer_id"].isna().any():
            orphan = seg.loc[seg["streamer_id"].isna(), "session_id"].iloc[0]
            raise ValueError(f"table 'showcase': session_id {orphan} is not in 'live_sessions'")
        streamer = streamers.encode(seg["streamer_id"].to_numpy(np.int64))
        product = products.encode(seg["product_id"].to_numpy(np.int64))
        start = seg["start_ts"].to_numpy(np.int64)
        check_times(start, "table 'showcase'")
        keys = time_keys(streamer, start)
        order = np.lexsort((product, keys))
        return cls(keys[order], streamer[order], product[order])

    def showing(self, streamer: np.ndarray, at: np.ndarray) -> np.ndarray:
        """(Q,) the product of each streamer's latest segment started at or before ``at``."""
        streamer = np.asarray(streamer, dtype=np.int64)
        pos = count_before(self.keys, streamer, np.asarray(at, dtype=np.int64) + 1) - 1
        safe = np.maximum(pos, 0)
        found = (pos >= 0) & (self.streamer[safe] == streamer) & (streamer > 0)
        return np.where(found, self.product[safe], 0)


def demographic_codes(tables: LiveCommerceTables, users: Vocab) -> dict[str, np.ndarray]:
    """Per user index, the code (1..K, 0 = missing) of each demographic column."""
    frame = tables.users
    index = users.encode(frame["user_id"].to_numpy(np.int64))
    out = {}
    for name in DEMOGRAPHICS:
        codes = np.zeros(len(users), dtype=np.int64)
        codes[index] = category_codes(frame[name])
        out[name] = codes
    return out


@dataclass
class ProfileSnapshots:
    """Profile matrices at cut times, each from the events strictly before its cut.

    ``matrices[k]`` (n_users, F) holds ``profile_matrix`` rows of the events before
    ``cuts[k]``; users without events there have zeros. ``at(times)`` picks, per query, the
    latest snapshot cut at or before the query time.
    """

    cuts: np.ndarray  # (S,) int64 ascending
    matrices: np.ndarray  # (S, n_users, F) float32
    names: tuple[str, ...]
    tables: LiveCommerceTables = field(repr=False)
    users: Vocab = field(repr=False)

    @classmethod
    def daily(
        cls, tables: LiveCommerceTables, users: Vocab, until: int, every_s: int = DAY_S
    ) -> ProfileSnapshots:
        """Snapshots every ``every_s`` seconds from the first event, the last one holding every
        event up to ``until``."""
        ev = tables.events.sort_values(["ts", "event_id"], kind="stable")
        ts = ev["ts"].to_numpy(np.int64)
        first = int(ts.min()) if len(ts) else int(until)
        # Daily cuts, and a last one right after ``until``: no snapshot sees a later event.
        cuts = np.unique(np.append(np.arange(first, until + 1, every_s), until + 1))
        profiler = Profiler.for_tables(tables)
        bounds = np.searchsorted(ts, cuts, side="left")
        stats, mats, names = None, [], ()
        for k, cut in enumerate(cuts):
            lo = bounds[k - 1] if k else 0
            batch = ev.iloc[lo : bounds[k]]
            if len(batch):
                new = profiler.stats(batch, ref_ts=int(cut) - 1)
                stats = new if stats is None else stats.merge(new)
            matrix, names = cls._matrix(profiler, stats, users)
            mats.append(matrix)
        width = max(m.shape[1] for m in mats)
        mats = [
            m if m.shape[1] == width else np.zeros((len(users), width), np.float32) for m in mats
        ]
        return cls(cuts, np.stack(mats), names, tables, users)

    @staticmethod
    def _matrix(profiler, stats, users: Vocab) -> tuple[np.ndarray, tuple[str, ...]]:
        if stats is None:
            return np.zeros((len(users), 0), np.float32), ()
        ids, matrix, names = profile_matrix(profiler.derive(stats).profiles)
        out = np.zeros((len(users), matrix.shape[1]), dtype=np.float32)
        out[users.encode(ids)] = matrix
        out[:2] = 0.0  # padding and unknown users
        return out, tuple(names)

    @property
    def n_features(self) -> int:
        return self.matrices.shape[2]

    def at(self, user: np.ndarray, when: np.ndarray) -> np.ndarray:
        """(Q, F) each user's row in the latest snapshot cut at or before ``when``."""
        k = np.searchsorted(self.cuts, np.asarray(when, dtype=np.int64), side="right") - 1
        rows = self.matrices[np.maximum(k, 0), np.asarray(user, dtype=np.int64)]
        return np.where((k >= 0)[:, None], rows, 0.0).astype(np.float32)

    def extended_to(self, before: int) -> ProfileSnapshots:
        """These snapshots plus one cut at ``before`` (events strictly before it), for scoring
        at a later horizon than the training data reached."""
        if before <= int(self.cuts[-1]):
            return self
        ev = self.tables.events
        profiler = Profiler.for_tables(self.tables)
        seen = ev.loc[ev["ts"].to_numpy(np.int64) < before]
        stats = profiler.stats(seen, ref_ts=before - 1) if len(seen) else None
        matrix, _ = self._matrix(profiler, stats, self.users)
        if matrix.shape[1] != self.n_features:
            matrix = np.zeros((len(self.users), self.n_features), np.float32)
        return ProfileSnapshots(
            np.append(self.cuts, before),
            np.concatenate([self.matrices, matrix[None]]),
            self.names,
            self.tables,
            self.users,
        )


@dataclass
class WorldFeatures:
    """Everything the two-tower model reads from a world's tables beyond its tokens."""

    visits: Visits
    showcase: Showcase
    demographics: dict[str, np.ndarray]  # name -> (n_users,) codes
    keywords: sp.csr_matrix  # (n_products, n_tokens) bag of each product's keywords
    tables: LiveCommerceTables = field(repr=False)
    users: Vocab = field(repr=False)
    profiles: ProfileSnapshots | None = None

    def demographic_sizes(self) -> dict[str, int]:
        """Codes per demographic column (0 = missing included)."""
        return {k: int(v.max(initial=0)) + 1 for k, v in self.demographics.items()}

    def with_profiles(self, until: int) -> WorldFeatures:
        """These features with daily profile snapshots up to ``until`` (kept when they reach
        it already)."""
        if self.profiles is not None and int(self.profiles.cuts[-1]) > until:
            return self
        return replace(self, profiles=ProfileSnapshots.daily(self.tables, self.users, until))

    @classmethod
    def from_tables(
        cls,
        tables: LiveCommerceTables,
        *,
        users: Vocab,
        products: Vocab,
        streamers: Vocab,
        profiles_until: int | None = None,
    ) -> WorldFeatures:
        """``profiles_until``: build daily profile snapshots up to that time (None: none)."""
        profiles = None
        if profiles_until is not None:
            profiles = ProfileSnapshots.daily(tables, users, profiles_until)
        return cls(
            visits=Visits.from_tables(tables, users, streamers),
            showcase=Showcase.from_tables(tables, streamers, products),
            demographics=demographic_codes(tables, users),
            keywords=product_features(tables, products).tokens,
            tables=tables,
            users=users,
            profiles=profiles,
        )
