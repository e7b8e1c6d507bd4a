"""Behaviour tokens -> two-tower training examples and query features, point-in-time correct.

A training example is a fresh choice of a head's kind (a product action, or a room entry; see
``TokenLog.first_in_visit``) with its user and time ``t``. Its query features come strictly from
what happened before ``t``:

* the bag of the user's last ``bag_size`` products (entity, action, age bucket) and last
  ``bag_size`` rooms entered, among the tokens with time < ``t``;
* the hour of day and weekday of ``t`` (local time), and the room the user was in at ``t``
  (``recsys.inputs.world_features.Visits``);
* demographics, and the profile snapshot cut at or before ``t``.

A room target also carries the product its room presented at ``t`` (the room tower's input).
Scoring asks the same questions "before ``horizon + 1``", i.e. from everything up to the end of
the history. Item-only data (public datasets) gives user ids and item bags only; its times are
order keys, so there are no hours and ages count positions rather than hours.

``TwoTowerDataset`` batches the examples of one head at a time, in an order that is a pure
function of (seed, epoch), and builds each batch's bags from stored end positions, so no
(examples x bag) array is ever held in memory. Optionally it asks each query some random time
before its target (``max_lag_s``; still strictly before ``t``), as a scored history ends a
while before the choices it is judged on, and attaches what was live at each target's time
(for a softmax over the rooms or shelves on air).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields

import numpy as np
import scipy.sparse as sp
import torch

from recsys.inputs.batch_parts import part_slice
from recsys.inputs.live_candidates import LiveCandidates
from recsys.inputs.tokens import KIND_TABLES, PRODUCT, ROOM, TokenLog
from recsys.inputs.world_features import (
    DEMOGRAPHICS,
    WorldFeatures,
    check_times,
    count_before,
    time_keys,
)

N_AGE_BUCKETS = 13  # 0 padding, 1 + floor(log2(1 + age)) capped at 12
HEAD_KINDS = {table: kind for kind, table in KIND_TABLES.items()}  # "product" -> PRODUCT
WINDOW_FIELDS = ("entity", "action", "age")


def age_buckets(age: np.ndarray) -> np.ndarray:
    """1 + floor(log2(1 + age)), capped at ``N_AGE_BUCKETS - 1``; age in hours or positions."""
    raw = 1 + np.floor(np.log2(1.0 + np.maximum(age, 0))).astype(np.int64)
    return np.minimum(raw, N_AGE_BUCKETS - 1)


@dataclass(frozen=True)
class KindLog:
    """One token kind's sub-stream of a ``TokenLog``, searchable by (user, time)."""

    keys: np.ndarray  # (N,) time_keys(user, ts), ascending
    entity: np.ndarray
    action: np.ndarray
    ts: np.ndarray
    start: np.ndarray  # (n_users,) first position of each user's row

    @classmethod
    def of(cls, log: TokenLog, kind: int) -> KindLog:
        user = np.repeat(np.arange(log.n_users), log.lengths)
        pick = log.kind == kind
        counts = np.bincount(user[pick], minlength=log.n_users)
        start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        ts = log.ts[pick]
        check_times(ts, "token log")
        return cls(time_keys(user[pick], ts), log.entity[pick], log.action[pick], ts, start)

    def ends(self, user: np.ndarray, before: np.ndarray) -> np.ndarray:
        """Absolute end (exclusive) of each user's tokens with time < ``before``."""
        return count_before(self.keys, user, before)

    def window(
        self, user: np.ndarray, end: np.ndarray, size: int, now: np.ndarray, timed: bool
    ) -> dict[str, np.ndarray]:
        """The ``size`` tokens before ``end``, left-padded: entity, action, age (Q, size).

        Age is hours before ``now`` when ``timed``, else the position counted from the end.
        """
        idx = end[:, None] - size + np.arange(size)  # (Q, size)
        if len(self.keys) == 0:
            return {name: np.zeros(idx.shape, dtype=np.int64) for name in WINDOW_FIELDS}
        real = idx >= self.start[user][:, None]
        safe = np.where(real, idx, 0)
        if timed:
            age = (now[:, None] - self.ts[safe]) / 3600.0
        else:
            age = np.broadcast_to(np.arange(size - 1, -1, -1), idx.shape)
        return {
            "entity": np.where(real, self.entity[safe], 0),
            "action": np.where(real, self.action[safe], 0),
            "age": np.where(real, age_buckets(age), 0),
        }


@dataclass
class QueryFeatures:
    """Query-tower inputs of Q queries (numpy); ``profile`` None when not used."""

    user: np.ndarray  # (Q,)
    products: dict[str, np.ndarray]  # entity, action, age: (Q, N)
    rooms: dict[str, np.ndarray]  # entity, action, age: (Q, N); width 0 for item-only data
    hour: np.ndarray  # (Q,) 1 + local hour, 0 unknown
    weekday: np.ndarray  # (Q,) 1 + weekday (Monday 1), 0 unknown
    room: np.ndarray  # (Q,) streamer whose room the user is in, 0 none
    demographics: np.ndarray  # (Q, D) codes
    profile: np.ndarray | None = None  # (Q, F)


class QueryBuilder:
    """Computes ``QueryFeatures`` of (user, time) pairs from a token log and a world."""

    def __init__(
        self,
        log: TokenLog,
        *,
        bag_size: int,
        world: WorldFeatures | None = None,
        utc_offset_hours: int = 8,
        profile: bool = False,
    ) -> None:
        if profile and (world is None or world.profiles is None):
            raise ValueError("profile features need a WorldFeatures with profile snapshots")
        self.log, self.bag_size, self.world = log, bag_size, world
        self.timed, self.offset_s = log.timed, utc_offset_hours * 3600
        self.profile = profile
        self.products = KindLog.of(log, PRODUCT)
        self.rooms = KindLog.of(log, ROOM)
        self.has_rooms = len(self.rooms.keys) > 0 or world is not None

    def ends(self, user: np.ndarray, before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.products.ends(user, before), self.rooms.ends(user, before)

    def features(
        self,
        user: np.ndarray,
        before: np.ndarray,
        ends: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> QueryFeatures:
        """Features of each user from everything strictly before ``before`` (Q,)."""
        user = np.asarray(user, dtype=np.int64)
        before = np.asarray(before, dtype=np.int64)
        prod_end, room_end = ends if ends is not None else self.ends(user, before)
        now = before.astype(np.float64)
        products = self.products.window(user, prod_end, self.bag_size, now, self.timed)
        width = self.bag_size if self.has_rooms else 0
        rooms = self.rooms.window(user, room_end, width, now, self.timed)
        q = len(user)
        hour = weekday = room = np.zeros(q, dtype=np.int64)
        if self.timed:
            local = before + self.offset_s
            hour = 1 + (local // 3600) % 24
            weekday = 1 + (local // 86_400 + 3) % 7  # 1970-01-01 was a Thursday
        demo = np.zeros((q, 0), dtype=np.int64)
        profile = None
        if self.world is not None:
            room = self.world.visits.room_at(user, before)
            demo = np.stack([self.world.demographics[d][user] for d in DEMOGRAPHICS], axis=1)
            if self.profile:
                profile = self.world.profiles.at(user, before)
        return QueryFeatures(user, products, rooms, hour, weekday, room, demo, profile)


@dataclass(frozen=True)
class Examples:
    """Training examples: one per fresh choice of a head's kind (time order)."""

    head: np.ndarray  # (E,) index into ``heads``
    heads: tuple[str, ...]
    user: np.ndarray
    ts: np.ndarray
    target: np.ndarray  # entity index in the head's table
    showing: np.ndarray  # room targets: the product on show at ``ts``; else 0

    def __len__(self) -> int:
        return len(self.user)

    def counts(self, head: str, n: int) -> np.ndarray:
        """(n,) how often each entity is a target of ``head`` (for the logQ correction)."""
        pick = self.head == self.heads.index(head)
        return np.bincount(self.target[pick], minlength=n).astype(np.float64)


def training_examples(
    log: TokenLog,
    heads: tuple[str, ...],
    *,
    world: WorldFeatures | None = None,
    fresh_only: bool = True,
) -> Examples:
    """Every (fresh) token of the heads' kinds, as a target with its user and time."""
    unknown = sorted(set(heads) - set(HEAD_KINDS))
    if unknown:
        raise ValueError(f"unknown heads {unknown}; known: {sorted(HEAD_KINDS)}")
    user = np.repeat(np.arange(log.n_users), log.lengths)
    keep = log.first_in_visit() if fresh_only else np.ones(len(log), dtype=bool)
    head = np.full(len(log), -1, dtype=np.int64)
    for i, name in enumerate(heads):
        head[keep & (log.kind == HEAD_KINDS[name])] = i
    pick = head >= 0
    ts, entity = log.ts[pick], log.entity[pick]
    showing = np.zeros(int(pick.sum()), dtype=np.int64)
    rooms = log.kind[pick] == ROOM
    if world is not None and rooms.any():
        showing[rooms] = world.showcase.showing(entity[rooms], ts[rooms])
    return Examples(head[pick], tuple(heads), user[pick], ts, entity, showing)


@dataclass
class TwoTowerBatch:
    """Query features (B, ...) of one head's examples and their targets, as tensors."""

    head: str
    user: torch.Tensor
    product_entity: torch.Tensor  # (B, N)
    product_action: torch.Tensor
    product_age: torch.Tensor
    room_entity: torch.Tensor  # (B, N_r)
    room_age: torch.Tensor
    hour: torch.Tensor  # (B,)
    weekday: torch.Tensor
    room: torch.Tensor
    demographics: torch.Tensor  # (B, D)
    profile: torch.Tensor | None = None  # (B, F)
    target: torch.Tensor | None = None  # (B,)
    showing: torch.Tensor | None = None  # (B,) room targets' product on show
    # Live-negative training: (B, n) what was live at each target's time (the target too) and,
    # for rooms with a world, the product each live room showed then (0 elsewhere).
    allowed: torch.Tensor | None = None
    allowed_showing: torch.Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TwoTowerBatch:
        moved = {
            f.name: (v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v)
            for f in fields(self)
            for v in (getattr(self, f.name),)
        }
        return TwoTowerBatch(**moved)

    @property
    def size(self) -> int:
        return int(self.user.shape[0])

    @classmethod
    def from_features(
        cls,
        head: str,
        q: QueryFeatures,
        target: np.ndarray | None = None,
        showing: np.ndarray | None = None,
    ) -> TwoTowerBatch:
        t = torch.from_numpy

        def opt(a):
            return None if a is None else t(np.ascontiguousarray(a))

        return cls(
            head=head,
            user=t(q.user),
            product_entity=t(q.products["entity"]),
            product_action=t(q.products["action"]),
            product_age=t(q.products["age"]),
            room_entity=t(q.rooms["entity"]),
            room_age=t(q.rooms["age"]),
            hour=t(q.hour),
            weekday=t(q.weekday),
            room=t(q.room),
            demographics=t(q.demographics),
            profile=opt(q.profile),
            target=opt(target),
            showing=opt(showing),
        )


class TwoTowerDataset:
    """Examples batched one head at a time, in a (seed, epoch)-determined order.

    ``max_lag_s`` > 0 asks each example's query at a random earlier moment, ``t - U(0,
    max_lag_s)`` (drawn afresh per epoch): a scored history ends some time before the choices
    it is judged on (a validation window spans days), not right before each of them.
    """

    def __init__(
        self,
        examples: Examples,
        queries: QueryBuilder,
        max_lag_s: float = 0.0,
        *,
        live: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
        n_entities: Mapping[str, int] | None = None,
    ) -> None:
        """``live`` (head -> availability intervals, sized by ``n_entities``) attaches to each
        batch what was live at its targets' times, for a softmax over those."""
        if len(examples) == 0:
            raise ValueError("two-tower: no training examples")
        if max_lag_s < 0:
            raise ValueError(f"max_lag_s must be >= 0, got {max_lag_s}")
        self.examples, self.queries, self.max_lag_s = examples, queries, max_lag_s
        # Where each example's bags end, so a batch only gathers its own windows.
        self.ends = queries.ends(examples.user, examples.ts)
        self.live = {}
        for head, intervals in (live or {}).items():
            mine = (examples.head == examples.heads.index(head))[:, None]  # (E, 1)
            self.live[head] = LiveCandidates.build(
                intervals, examples.ts[:, None], mine, n_entities[head]
            )

    def __len__(self) -> int:
        return len(self.examples)

    def _per_head(self) -> list[np.ndarray]:
        e = self.examples
        return [np.flatnonzero(e.head == h) for h in range(len(e.heads))]

    def n_batches(self, batch_size: int) -> int:
        return sum(-(-len(rows) // batch_size) for rows in self._per_head())

    def order(self, seed: int, epoch: int, batch_size: int) -> list[np.ndarray]:
        """The epoch's batches (example rows, one head each); a pure function of the seed."""
        rng = np.random.default_rng([seed, epoch])
        batches = []
        for rows in self._per_head():
            rows = rows[rng.permutation(len(rows))]
            batches += np.array_split(rows, np.arange(batch_size, len(rows), batch_size))
        return [batches[i] for i in rng.permutation(len(batches))]

    def batch(self, rows: np.ndarray, lag: np.ndarray | None = None) -> TwoTowerBatch:
        """The examples at ``rows``, queried ``lag`` (seconds) before their time."""
        e = self.examples
        if lag is None:
            ends = (self.ends[0][rows], self.ends[1][rows])
            q = self.queries.features(e.user[rows], e.ts[rows], ends)
        else:
            q = self.queries.features(e.user[rows], e.ts[rows] - lag)
        head = e.heads[int(e.head[rows[0]])]
        batch = TwoTowerBatch.from_features(head, q, e.target[rows], e.showing[rows])
        if head in self.live:
            allowed = self.live[head].mask(self.live[head].row[rows, 0], e.target[rows])
            batch.allowed = allowed
            world = self.queries.world
            if head == "streamer" and world is not None:
                r, room = np.nonzero(allowed.numpy())
                shown = np.zeros(allowed.shape, dtype=np.int64)
                shown[r, room] = world.showcase.showing(room, e.ts[rows][r])
                batch.allowed_showing = torch.from_numpy(shown)
        return batch

    def smallest_batch(self, batch_size: int) -> int:
        """Rows in the epoch's smallest batch (a head's last one)."""
        return min(len(rows) - (-(-len(rows) // batch_size) - 1) * batch_size
                   for rows in self._per_head() if len(rows))  # fmt: skip

    def epoch(
        self,
        *,
        batch_size: int,
        seed: int,
        epoch: int,
        start_step: int = 0,
        bucket_pool: int = 0,
        part: tuple[int, int] = (0, 1),
    ) -> Iterator[TwoTowerBatch]:
        """The epoch's batches from ``start_step`` on (``bucket_pool`` has no use here);
        ``part`` (index, count): that block of each batch (``recsys.inputs.batch_parts``)."""
        del bucket_pool
        lags = None
        if self.max_lag_s > 0:
            rng = np.random.default_rng([seed, epoch, 1])
            lags = np.floor(rng.random(len(self)) * self.max_lag_s).astype(np.int64)
        for rows in self.order(seed, epoch, batch_size)[start_step:]:
            rows = rows[part_slice(len(rows), part)]
            yield self.batch(rows, None if lags is None else lags[rows])


def head_counts(examples: Examples, sizes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Per head, the training frequency of every entity."""
    return {h: examples.counts(h, sizes[h]) for h in examples.heads}


def padded_tokens(tokens: sp.csr_matrix | None, n_rows: int) -> np.ndarray:
    """(n_rows, K) token codes 1..T of each row's tokens, left-aligned, 0 = padding."""
    if tokens is None or tokens.nnz == 0:
        return np.zeros((n_rows, 0), dtype=np.int64)
    tokens = sp.csr_matrix(tokens)
    lengths = np.diff(tokens.indptr)
    out = np.zeros((n_rows, int(lengths.max())), dtype=np.int64)
    rows = np.repeat(np.arange(tokens.shape[0]), lengths)
    cols = np.arange(tokens.nnz) - np.repeat(tokens.indptr[:-1], lengths)
    out[rows, cols] = tokens.indices.astype(np.int64) + 1
    return out
