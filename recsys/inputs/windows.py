"""Token streams -> fixed-length padded windows -> batches of tensors.

A window is a user's most recent tokens, left-padded to a fixed length, so the latest token
always sits in the last slot. Training windows take ``maxlen + 1`` tokens: the first ``maxlen``
are the input, and each head's target at a slot is the next token of that head's kind after it
(for item-only streams simply the next item), or with ``targets="future"`` a random later one.
Only fresh choices are targets (``TokenLog.first_in_visit``): the cart and purchase that follow a
click of the same product in the same room visit are inputs, not extra targets, as evaluation
counts them once. With a target lag, a slot's target is instead the first fresh token of the
head's kind at least that many seconds later (``lagged_next``), or, keeping the next one, a
second target of the slot (``lagged``). Every construction is vectorised over users.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from recsys.inputs.batch_parts import part_slice
from recsys.inputs.live_candidates import LiveCandidates
from recsys.inputs.targets import future_of_kind, lagged_targets, next_of_kind, next_visit
from recsys.inputs.tokens import PAD_KIND, ROOM, TokenLog

INPUT_FIELDS = ("kind", "entity", "action", "gap")


@dataclass
class SequenceBatch:
    """Input token windows (B, L) and, for training, each head's (B, L) targets (0 = none)."""

    kind: torch.Tensor
    entity: torch.Tensor
    action: torch.Tensor
    gap: torch.Tensor
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    # Per head, (N, n_entities) bool: what was live at each real target (row-major slot order).
    candidates: dict[str, torch.Tensor] = field(default_factory=dict)
    # Optional second targets per head (B, L): the lagged ones, next to the next ones.
    lagged: dict[str, torch.Tensor] = field(default_factory=dict)
    lagged_candidates: dict[str, torch.Tensor] = field(default_factory=dict)
    user: torch.Tensor | None = None  # (B,) the windows' users (token-log rows)

    @property
    def size(self) -> int:
        """Rows (windows) of the batch."""
        return self.kind.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SequenceBatch:
        move = {f: getattr(self, f).to(device, non_blocking=non_blocking) for f in INPUT_FIELDS}
        if self.user is not None:
            move["user"] = self.user.to(device, non_blocking=non_blocking)
        maps = ("targets", "candidates", "lagged", "lagged_candidates")
        for name in maps:
            move[name] = {
                h: t.to(device, non_blocking=non_blocking) for h, t in getattr(self, name).items()
            }
        return SequenceBatch(**move)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.kind.shape)


def window_tokens(
    log: TokenLog,
    users: np.ndarray,
    ends: np.ndarray,
    length: int,
    n_gap_buckets: int = 0,
    with_target_kind: bool = False,
) -> dict[str, np.ndarray]:
    """The ``length`` tokens of each user's row before position ``ends`` (absolute, exclusive),
    left-padded: field -> (U, length) int64."""
    users = np.asarray(users, dtype=np.int64)
    start = log.indptr[users]
    idx = np.asarray(ends, dtype=np.int64)[:, None] - length + np.arange(length)  # (U, length)
    valid = idx >= start[:, None]
    if len(log) == 0:
        names = (*INPUT_FIELDS, "target_kind", "ts") if with_target_kind else INPUT_FIELDS
        return {f: np.zeros(idx.shape, dtype=np.int64) for f in names}
    safe = np.where(valid, idx, 0)
    gaps = log.gap_buckets(n_gap_buckets)
    columns = {"kind": log.kind, "entity": log.entity, "action": log.action, "gap": gaps}
    if with_target_kind:
        # Tokens that repeat a choice just made keep their kind as inputs but are no targets.
        columns["target_kind"] = np.where(log.first_in_visit(), log.kind, PAD_KIND)
        columns["ts"] = log.ts
    return {f: np.where(valid, col[safe], 0) for f, col in columns.items()}


def last_tokens(
    log: TokenLog, users: np.ndarray, length: int, n_gap_buckets: int = 0
) -> dict[str, np.ndarray]:
    """Each user's last ``length`` tokens, left-padded: field -> (U, length) int64."""
    users = np.asarray(users, dtype=np.int64)
    return window_tokens(log, users, log.indptr[users + 1], length, n_gap_buckets)


@dataclass(frozen=True)
class Windows:
    """Training windows: inputs (U, L) per field, targets (U, L) per head, the users they are.

    ``lookahead`` keeps the (U, L + 1) kinds and entities the targets come from, so that
    random-future targets can be drawn afresh for every batch.
    """

    users: np.ndarray  # (U,)
    inputs: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    heads: dict[str, int] = field(default_factory=dict)  # head -> token kind
    lookahead: dict[str, np.ndarray] = field(default_factory=dict)
    target_time: dict[str, np.ndarray] = field(default_factory=dict)  # (U, L) per head
    # Second, lagged targets kept next to the next ones (``keep_next``), and their times.
    lagged: dict[str, np.ndarray] = field(default_factory=dict)
    lagged_time: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.users)


def training_windows(
    log: TokenLog,
    *,
    maxlen: int,
    heads: Mapping[str, int],
    n_gap_buckets: int = 0,
    every_target: bool = False,
    target_lag_s: int = 0,
    keep_next: bool = False,
) -> Windows:
    """Windows of ``maxlen + 1`` tokens for users with at least one target.

    By default one window per user, its latest tokens (SASRec's choice). ``every_target``
    cuts each stream from the end into consecutive windows whose targets do not overlap, so
    every token after a user's first is a target once. ``heads`` maps a head name (its entity
    table) to the token kind it predicts. ``target_lag_s`` > 0 targets each slot at the first
    fresh token of the head's kind at least that long after it (``lagged_next``, looked up in
    the whole stream, so it may lie beyond the window) instead of the next one. ``keep_next``
    keeps the next targets and returns the lagged ones as second targets (``Windows.lagged``).
    """
    lengths = log.lengths
    users = np.flatnonzero(lengths >= 2)
    ends = log.indptr[users + 1]
    if every_target:
        per_user = -(-(lengths[users] - 1) // maxlen)  # windows per user
        first = np.cumsum(per_user) - per_user
        back = np.arange(per_user.sum()) - np.repeat(first, per_user)  # 0 = the latest window
        users, ends = np.repeat(users, per_user), np.repeat(ends, per_user) - back * maxlen
    full = window_tokens(log, users, ends, maxlen + 1, n_gap_buckets, True)  # (U, L + 1) each
    target_kind, ts = full.pop("target_kind"), full.pop("ts")
    real = full["kind"][:, :-1] != PAD_KIND
    if keep_next and target_lag_s <= 0:
        raise ValueError("keep_next keeps the next targets next to lagged ones: set target_lag_s")
    lagged, lagged_time = {}, {}
    if target_lag_s > 0:
        lagged, lagged_time = lagged_targets(log, users, ends, maxlen, heads, target_lag_s, real)
    if target_lag_s > 0 and not keep_next:
        targets, times, lagged, lagged_time = lagged, lagged_time, {}, {}
    else:
        targets = {h: next_of_kind(target_kind, full["entity"], k, real) for h, k in heads.items()}
        times = {h: next_of_kind(target_kind, ts, k, real) for h, k in heads.items()}
    keep = np.zeros(len(users), dtype=bool)
    for t in (*targets.values(), *lagged.values()):
        keep |= (t > 0).any(axis=1)
    inputs = {f: a[keep, :-1] for f, a in full.items()}
    lookahead = {"kind": target_kind[keep], "entity": full["entity"][keep]}
    cut = [{h: t[keep] for h, t in d.items()} for d in (targets, times, lagged, lagged_time)]
    return Windows(users[keep], inputs, cut[0], dict(heads), lookahead, cut[1], cut[2], cut[3])


TARGETS = ("next", "future", "later_visit")


class WindowDataset:
    """Training windows as tensors, batched in a (seed, epoch)-determined order.

    ``targets="next"`` trains each slot on the next token of each head's kind; ``"future"`` on
    a random later one, drawn per batch from a generator seeded by (seed, epoch, step);
    ``"later_visit"`` on a random one from the next room visit on (the room entered next, or a
    product chosen after it), as a history that ends is scored for the visits that follow.
    """

    def __init__(
        self,
        windows: Windows,
        *,
        targets: str = "next",
        live: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
        n_entities: Mapping[str, int] | None = None,
    ) -> None:
        """``live`` (head -> availability intervals) restricts each target's softmax to what
        was live at its time (next-token targets only; ``n_entities`` sizes the masks)."""
        if targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
        if live and targets != "next":
            raise ValueError("live candidate sets need targets='next' (their times are known)")
        self.live = _live_sets(live, windows.targets, windows.target_time, n_entities)
        self.lagged_live = _live_sets(live, windows.lagged, windows.lagged_time, n_entities)
        self.mode, self.heads, self.lookahead = targets, windows.heads, windows.lookahead
        self.users = windows.users
        self.inputs = {
            f: torch.from_numpy(np.ascontiguousarray(a)) for f, a in windows.inputs.items()
        }
        self.targets = {
            h: torch.from_numpy(np.ascontiguousarray(t)) for h, t in windows.targets.items()
        }
        self.lagged = {
            h: torch.from_numpy(np.ascontiguousarray(t)) for h, t in windows.lagged.items()
        }
        self.lengths = (self.inputs["kind"] != PAD_KIND).sum(dim=1)  # (U,)
        self.n_targets = sum(int((t > 0).sum()) for t in self.targets.values())

    def __len__(self) -> int:
        return len(self.users)

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def order(self, seed: int, epoch: int) -> torch.Tensor:
        """The permutation of windows for one epoch; a pure function of (seed, epoch)."""
        rng = np.random.default_rng([seed, epoch])
        return torch.from_numpy(rng.permutation(len(self)))

    def bucketed_order(self, seed: int, epoch: int, batch_size: int, pool: int) -> torch.Tensor:
        """A shuffled order whose batches hold windows of similar length (less padding).

        Pools of ``pool`` batches of the shuffled windows are sorted by length and cut into
        batches, and the batches are shuffled; a pure function of (seed, epoch) as well.
        """
        rng = np.random.default_rng([seed, epoch, 1])
        order = rng.permutation(len(self))
        lengths = self.lengths.numpy()
        span = batch_size * pool
        for start in range(0, len(order), span):
            part = order[start : start + span]
            order[start : start + span] = part[np.argsort(-lengths[part], kind="stable")]
        batches = np.array_split(order, np.arange(batch_size, len(order), batch_size))
        return torch.from_numpy(np.concatenate([batches[i] for i in rng.permutation(len(batches))]))

    def batch(self, rows: torch.Tensor, u: np.ndarray | None = None) -> SequenceBatch:
        """The windows at ``rows``, cut to the longest one among them (padding is on the left);
        ``u`` (len(rows), maxlen) uniform draws pick the targets when they are not the next
        token (``draws``)."""
        width = int(self.lengths[rows].max())
        cols = slice(self.inputs["kind"].shape[1] - width, None)
        inputs = {f: a[rows, cols] for f, a in self.inputs.items()}  # (B, width)
        if self.mode != "next" and u is not None:
            kind, entity = (self.lookahead[f][rows.numpy()] for f in ("kind", "entity"))
            real = self.inputs["kind"][rows].numpy() != PAD_KIND
            visit = next_visit(kind) if self.mode == "later_visit" else None
            targets = {}
            for h, k in self.heads.items():
                first = None if visit is None else np.minimum(visit + (k != ROOM), kind.shape[1])
                picked = future_of_kind(kind, entity, k, u, real, first)
                targets[h] = torch.from_numpy(picked[:, cols])
        else:
            targets = {h: t[rows, cols] for h, t in self.targets.items()}
        lagged = {h: t[rows, cols] for h, t in self.lagged.items()}
        return SequenceBatch(
            **inputs,
            targets=targets,
            candidates=_masks(self.live, targets, rows, cols),
            lagged=lagged,
            lagged_candidates=_masks(self.lagged_live, lagged, rows, cols),
            user=torch.from_numpy(np.asarray(self.users)[rows.numpy()]),
        )

    def smallest_batch(self, batch_size: int) -> int:
        """Rows in the epoch's smallest batch (the last one)."""
        return len(self) - (self.n_batches(batch_size) - 1) * batch_size

    def epoch(
        self,
        *,
        batch_size: int,
        seed: int,
        epoch: int,
        start_step: int = 0,
        bucket_pool: int = 0,
        part: tuple[int, int] = (0, 1),
    ) -> Iterator[SequenceBatch]:
        """The epoch's batches from step ``start_step`` on (earlier steps are skipped).

        ``bucket_pool`` > 0 groups windows of similar length (``bucketed_order``). ``part``
        (index, count): that block of each batch (``recsys.inputs.batch_parts``), so the parts
        of a sharded run together see the single-process batches, random targets included.
        """
        if bucket_pool > 0:
            order = self.bucketed_order(seed, epoch, batch_size, bucket_pool)
        else:
            order = self.order(seed, epoch)
        for step in range(start_step, self.n_batches(batch_size)):
            rows = order[step * batch_size : (step + 1) * batch_size]
            mine = part_slice(len(rows), part)
            u = self.draws(len(rows), [seed, epoch, step, 2])
            yield self.batch(rows[mine], None if u is None else u[mine])

    def draws(self, n_rows: int, seed: list[int]) -> np.ndarray | None:
        """(n_rows, maxlen) uniform draws of a batch's random targets (None: next targets)."""
        if self.mode == "next":
            return None
        return np.random.default_rng(seed).random(size=(n_rows, self.inputs["kind"].shape[1]))


def _live_sets(
    live: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None,
    targets: Mapping[str, np.ndarray],
    times: Mapping[str, np.ndarray],
    n_entities: Mapping[str, int] | None,
) -> dict[str, LiveCandidates]:
    """Per head with targets, the live sets at each real target's time."""
    return {
        h: LiveCandidates.build(intervals, times[h], targets[h] > 0, n_entities[h])
        for h, intervals in (live or {}).items()
        if h in targets
    }


def _masks(
    live: Mapping[str, LiveCandidates],
    targets: Mapping[str, torch.Tensor],
    rows: torch.Tensor,
    cols: slice,
) -> dict[str, torch.Tensor]:
    """Per head, the (N, n_entities) live mask of each real target of the batch."""
    out = {}
    for h, sets in live.items():
        real = (targets[h] > 0).numpy()
        set_rows = sets.row[rows.numpy()][:, cols][real]  # (N,) row-major, as the loss
        out[h] = sets.mask(set_rows, targets[h].numpy()[real])
    return out


def scoring_batch(
    log: TokenLog, users: np.ndarray, maxlen: int, n_gap_buckets: int = 0
) -> SequenceBatch:
    """The latest ``maxlen`` tokens of each user as one input batch (no targets)."""
    tokens = last_tokens(log, users, maxlen, n_gap_buckets)
    width = max(int((tokens["kind"] != PAD_KIND).sum(axis=1).max(initial=0)), 1)
    inputs = {f: torch.from_numpy(a[:, -width:].copy()) for f, a in tokens.items()}
    return SequenceBatch(**inputs, user=torch.from_numpy(np.asarray(users, dtype=np.int64)))
