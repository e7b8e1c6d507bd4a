"""The two-tower training objective: in-batch softmax with logQ correction and mixed negatives.

Each row of a batch (one head's examples) is a query whose positive is its own target; the
candidates are every target of the batch (in-batch negatives) plus, optionally, ``n_mixed``
entities drawn uniformly for the whole batch (mixed negative sampling, Yang et al. 2020), which
reach the rarely chosen entities that in-batch sampling almost never shows.

In-batch candidates are sampled in proportion to how often entities are targets, so popular
entities are over-represented among the negatives, and the softmax learns to push them down.
The logQ correction (Yi et al., RecSys 2019) subtracts from every logit, the positive's
included, the log of the candidate's expected number of occurrences among a batch's candidates,

    log(B * p_j + K / n_real)

with ``p_j`` the entity's share of the training targets, B the batch size, K the mixed
negatives and ``n_real`` the real entities (reserved rows excluded); constants shared by all
columns cancel in the softmax. A candidate equal to a row's positive that is not the row's own
column (an accidental hit: the same item bought by two users in the batch) is masked out.

The temperature dividing the logits is the model's (learned there, so the optimiser sees it).

``negatives="live"`` (live-commerce worlds) replaces the sampled candidates with everything that
was on air at the target's time (the rooms live then, or the products on their shelves): the
set the availability-aware evaluation ranks in, so no sampling correction is needed. It scores
the whole catalogue per batch, which suits catalogues of thousands, not millions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys.data.vocab import N_RESERVED
from recsys.inputs.two_tower import TwoTowerBatch
from recsys.tasks.whole_batch import WholeBatch

NEGATIVES = ("in_batch", "live")


@dataclass(frozen=True)
class TwoTowerLossConfig:
    negatives: str = "in_batch"  # in_batch (+ n_mixed uniform) | live (everything on air)
    logq: bool = True  # in_batch: subtract log of each candidate's sampling probability
    n_mixed: int = 0  # in_batch: uniform negatives shared by a batch (0: in-batch only)
    room_weight: float = 1.0  # weight of the room head's loss next to the product head's

    def __post_init__(self) -> None:
        if self.negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {NEGATIVES}, got {self.negatives!r}")
        if self.n_mixed < 0 or self.room_weight < 0:
            raise ValueError(f"invalid TwoTowerLossConfig: {self}")


def candidate_log_q(
    freq: torch.Tensor, ids: torch.Tensor, batch_size: int, n_mixed: int, n_real: int
) -> torch.Tensor:
    """(C,) log expected occurrences of each candidate among a batch's candidates."""
    expected = batch_size * freq[ids] + n_mixed / max(n_real, 1)
    return torch.log(expected.clamp_min(1e-30))


def in_batch_softmax(
    logits: torch.Tensor,
    positives: torch.Tensor,
    candidates: torch.Tensor,
    log_q: torch.Tensor | None = None,
    own: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Softmax cross-entropy of (B, C) logits whose column ``own[i]`` (default i) is row i's
    positive.

    ``candidates`` (C,) are the entity ids of the columns; columns holding a row's positive
    other than its own are masked; ``log_q`` (C,) is subtracted from every column when given.
    """
    b = len(positives)
    logits = logits.float()
    if log_q is not None:
        logits = logits - log_q[None, :].float()
    rows = torch.arange(b, device=logits.device)
    own = rows if own is None else own.to(logits.device)
    hit = candidates[None, :] == positives[:, None]  # (B, C)
    hit[rows, own] = False
    logits = logits.masked_fill(hit, float("-inf"))
    return F.cross_entropy(logits, own, reduction=reduction)


class TwoTowerTask(nn.Module):
    """The configured loss on a batch of one head (``counts``: per head, target frequencies)."""

    def __init__(
        self,
        config: TwoTowerLossConfig,
        *,
        n_entities: Mapping[str, int],
        counts: Mapping[str, np.ndarray],
    ) -> None:
        super().__init__()
        self.config = config
        self.n_entities = dict(n_entities)
        for head, n in self.n_entities.items():
            c = np.asarray(counts.get(head, np.zeros(n)), dtype=np.float64)
            if len(c) != n:
                raise ValueError(f"counts of head {head!r}: {len(c)} entries, expected {n}")
            freq = c / max(c.sum(), 1.0)
            self.register_buffer(f"freq_{head}", torch.from_numpy(freq.astype(np.float32)))

    def negatives(self, head: str, generator: torch.Generator) -> torch.Tensor:
        """``n_mixed`` entities drawn uniformly among the real ones."""
        n = self.n_entities[head]
        return torch.randint(N_RESERVED, n, (self.config.n_mixed,), generator=generator)

    def shares(self, batch: TwoTowerBatch) -> dict[str, torch.Tensor]:
        """Each row's positive (and the product its room showed): a part of a split batch takes
        every row's as in-batch negatives, as the whole batch does (``WholeBatch``)."""
        out = {"target": batch.target.cpu()}
        if batch.showing is not None:
            out["showing"] = batch.showing.cpu()
        return out

    def forward(
        self,
        model: nn.Module,
        batch: TwoTowerBatch,
        generator: torch.Generator,
        whole: WholeBatch | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, per-head value) of a batch of one head; with ``whole``, the batch is a part
        of it and the loss is this part's term of the whole batch's."""
        c, head = self.config, batch.head
        if batch.allowed is not None:
            loss = live_softmax(model, batch, reduction="sum" if whole else "mean")
        else:
            loss = self.in_batch_loss(model, batch, generator, whole)
        value = loss.detach() if whole is None else loss.detach() / batch.size
        if whole is not None:
            loss = loss / whole.n_rows
        weight = c.room_weight if head == "streamer" else 1.0
        return weight * loss, {head: value}

    def in_batch_loss(
        self,
        model: nn.Module,
        batch: TwoTowerBatch,
        generator: torch.Generator,
        whole: WholeBatch | None = None,
    ) -> torch.Tensor:
        """Mean over the batch (with ``whole``: sum over this part's rows, the whole batch's
        positives as candidates)."""
        c, head = self.config, batch.head
        positives, showing, own = batch.target, batch.showing, None
        if whole is not None:
            everyone = whole.rows("target").to(positives.device)
            if showing is not None:
                showing = whole.rows("showing").to(showing.device)
            own = whole.own_rows()
        else:
            everyone = positives
        negatives = self.negatives(head, generator).to(positives.device)
        ids = torch.cat([everyone, negatives])
        if showing is not None and head == "streamer":
            # A mixed negative room is shown as it was at the time of a query of the batch.
            rows = torch.arange(len(negatives), device=ids.device) % len(everyone)
            showing = torch.cat([showing, showing[rows]])
        else:
            showing = None
        logits = model.logits(batch, head, ids, showing)  # (b, B + K)
        log_q = None
        if c.logq:
            freq = getattr(self, f"freq_{head}")
            n_real = self.n_entities[head] - N_RESERVED
            log_q = candidate_log_q(freq, ids, len(everyone), len(negatives), n_real)
        reduction = "mean" if whole is None else "sum"
        return in_batch_softmax(logits, positives, ids, log_q, own, reduction)


def live_softmax(model: nn.Module, batch: TwoTowerBatch, reduction: str = "mean") -> torch.Tensor:
    """Softmax cross-entropy over what was live at each target's time (``batch.allowed``).

    Every live entity is a negative, so no sampling correction is needed. Only entities live for
    some row go through the candidate tower, each once: a room with a world is embedded once per
    distinct product it showed at the batch's times (``allowed_showing``), and only the
    (row, live room) pairs are scored. Columns no row may rank would only add exp(-inf) terms.
    """
    head, allowed = batch.head, batch.allowed
    q = model.query(batch, head).float() / model.temperature
    if batch.allowed_showing is None:
        ids = allowed.any(0).nonzero().squeeze(1)  # (C,) entities live for some row
        logits = q @ model.candidates(head, ids).float().t() + model.pair_bonus(batch, head, ids)
        logits = logits.masked_fill(~allowed[:, ids], float("-inf"))  # (B, C)
        target = torch.searchsorted(ids, batch.target)
        return F.cross_entropy(logits, target, reduction=reduction)
    rows, entity = allowed.nonzero(as_tuple=True)
    showing = batch.allowed_showing[rows, entity]
    key = entity * (int(showing.max()) + 1) + showing
    unique, pair_of = torch.unique(key, return_inverse=True)  # distinct (room, product shown)
    first = torch.empty_like(unique).scatter_(0, pair_of, torch.arange(len(key), device=key.device))
    c = model.candidates(head, entity[first], showing[first]).float()  # (P, D)
    ids = torch.arange(allowed.shape[1], device=allowed.device)
    bonus = model.pair_bonus(batch, head, ids)  # (B, n)
    pair = (q[rows] * c[pair_of]).sum(-1) + bonus[rows, entity]
    logits = torch.full(allowed.shape, float("-inf"), device=q.device)
    logits = logits.index_put((rows, entity), pair)
    return F.cross_entropy(logits, batch.target, reduction=reduction)
