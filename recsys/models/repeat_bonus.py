"""Sparse score bonuses for entities a viewer has already touched (the repeat bonus).

On live platforms returning to a room or a product is the norm, and a dot product between a
state vector and an entity embedding under-ranks repeats. ``RepeatBonus`` scores, for each query
slot, every entity met at or before it in the window; ``RepeatScores`` holds the result as sparse
(row, entity) values that losses and scoring add to dense logits. ``Members`` routes a bonus
through a grouping (a room entry counts for every product its streamer sells).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recsys.data.vocab import N_RESERVED
from recsys.inputs.tokens import ACTIONS, ROOM
from recsys.inputs.windows import SequenceBatch

__all__ = ["Members", "RepeatBonus", "RepeatScores"]


@dataclass(frozen=True)
class RepeatScores:
    """Sparse (row, entity) score bonuses: ``keys`` = row * width + entity, sorted, unique."""

    keys: torch.Tensor  # (K,) int64
    values: torch.Tensor  # (K,)
    width: int  # entities per row

    def lookup(self, rows: torch.Tensor, entities: torch.Tensor) -> torch.Tensor:
        """The bonus of each (row, entity) pair, 0 where there is none (same shape as rows)."""
        wanted = rows * self.width + entities
        if len(self.keys) == 0:
            return torch.zeros(wanted.shape, dtype=self.values.dtype, device=wanted.device)
        pos = torch.searchsorted(self.keys, wanted).clamp(max=len(self.keys) - 1)
        found = self.keys[pos] == wanted
        return torch.where(found, self.values[pos], torch.zeros_like(self.values[pos]))

    def add_to(self, scores: torch.Tensor) -> torch.Tensor:
        """Dense (N, width) scores with the bonuses added (in place)."""
        scores.view(-1).index_add_(0, self.keys, self.values.to(scores.dtype))
        return scores


class RepeatBonus(nn.Module):
    """Bonus for entity j at query slot t from the earlier slots s <= t that hold j.

    Each occurrence scores ``v = action_w[action_s] + distance_w[log2(1 + t - s)] +
    <h_t, K h_s> / sqrt(dim)`` (what was done with it, how long ago, and whether the current
    state points back to it); occurrences add up as ``bonus = log(1 + sum exp(v))``, so an entity
    seen more often gets more, and one never seen gets nothing. Routed through ``Members``, a
    room entry is an occurrence of every product its streamer sells (its own action weight,
    ``enter``, sets how much that counts next to a click or a purchase of the product itself).
    """

    N_DISTANCE_BUCKETS = 12

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.action_w = nn.Embedding(len(ACTIONS), 1)
        self.distance_w = nn.Embedding(self.N_DISTANCE_BUCKETS, 1)
        self.key = nn.Linear(dim, dim, bias=False)
        for emb in (self.action_w, self.distance_w):
            nn.init.zeros_(emb.weight)
        nn.init.normal_(self.key.weight, 0.0, 0.02)
        # Scoring multiplies the bonus by this scale, calibrated on validation after training
        # (how strongly to favour repeats in a ranking differs from the next-choice odds).
        self.register_buffer("score_scale", torch.ones(()))

    def forward(
        self,
        batch: SequenceBatch,
        hidden: torch.Tensor,
        query: torch.Tensor,
        kind: int,
        width: int,
        via: Members | None = None,
    ) -> RepeatScores:
        """Bonuses for the query slots (B, L) bool; rows follow ``query.nonzero()`` order.

        With ``via``, earlier room tokens count too, for every entity that room's streamer
        lists in ``via`` (a product for its seller's room entries)."""
        # Only slots that some row queries (scoring queries the last one alone).
        slots = torch.nonzero(query.any(dim=0)).squeeze(1)  # (T,)
        v = self._pair_values(batch, hidden, slots)  # (B, T, L)
        query = query[:, slots]  # (B, T): same query.nonzero() order, no query was dropped
        keys, total = self._sums(batch, v, query, slots, batch.kind == kind, width)
        if via is not None:
            rooms, room_total = self._sums(batch, v, query, slots, batch.kind == ROOM, via.n_groups)
            routed, routed_total = via.expand(rooms, room_total, width)
            keys, total = _sum_by_key(torch.cat([keys, routed]), torch.cat([total, routed_total]))
        return RepeatScores(keys, torch.log1p(total), width)

    def _pair_values(
        self, batch: SequenceBatch, hidden: torch.Tensor, slots: torch.Tensor
    ) -> torch.Tensor:
        """``v`` of every (query slot t in ``slots``, source slot s) pair, (B, T, L).

        Dense over the window: one batched product and broadcast sums cost far less than
        gathering vectors and embedding rows per pair (a window of 200 tokens has ~20,000)."""
        keys = self.key(hidden)  # (B, L, dim)
        affinity = torch.bmm(hidden[:, slots], keys.transpose(1, 2))  # (B, T, L)
        steps = torch.arange(hidden.shape[1], device=hidden.device)
        distance = (slots[:, None] - steps[None, :]).clamp(min=0)  # (T, L)
        bucket = torch.log2(1.0 + distance.float()).long().clamp(max=self.N_DISTANCE_BUCKETS - 1)
        action = self.action_w(batch.action).squeeze(-1)  # (B, L_s)
        return (
            affinity / math.sqrt(hidden.shape[-1])
            + action[:, None, :]
            + self.distance_w(bucket).squeeze(-1)[None]
        )

    def _sums(
        self,
        batch: SequenceBatch,
        values: torch.Tensor,
        query: torch.Tensor,
        slots: torch.Tensor,
        source: torch.Tensor,
        width: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sorted unique ``row * width + entity`` keys of the ``source`` (B, L) slots at or
        before each query (``query`` (B, T) over window slots ``slots``), and the sum of
        ``exp(v)`` over each key's occurrences (``values``: the pairs' ``v``, (B, T, L))."""
        steps = torch.arange(source.shape[1], device=source.device)
        earlier = slots[:, None] >= steps[None, :]  # (T, L)
        pairs = query[:, :, None] & source[:, None, :] & earlier  # (B, T, L)
        b, t, s = pairs.nonzero(as_tuple=True)
        row = (query.reshape(-1).cumsum(0) - 1).view(query.shape)[b, t]  # query row of each pair
        v = values[b, t, s].float().clamp(max=30.0)
        return _sum_by_key(row * width + batch.entity[b, s], v.exp())


def _sum_by_key(keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted unique ``keys`` and the sum of ``values`` over each key's entries."""
    unique, inverse = torch.unique(keys, return_inverse=True)
    total = torch.zeros(len(unique), dtype=values.dtype, device=values.device)
    return unique, total.index_add_(0, inverse, values)


class Members(nn.Module):
    """A grouping of entities (CSR): the products each streamer sells, from per-product codes."""

    def __init__(self, group_of: np.ndarray | torch.Tensor, n_groups: int) -> None:
        super().__init__()
        self.n_groups = n_groups
        # Derived from the model's persistent side-feature codes, so not saved twice.
        self.register_buffer("indptr", torch.zeros(n_groups + 1, dtype=torch.int64), False)
        self.register_buffer("members", torch.zeros(0, dtype=torch.int64), False)
        self.regroup(torch.as_tensor(group_of, dtype=torch.int64))

    def regroup(self, group_of: torch.Tensor) -> None:
        """Rebuild from per-entity group codes (after loading codes other than the built ones)."""
        real = torch.nonzero(group_of >= N_RESERVED).squeeze(1)  # padding / unknown: nobody's
        members = real[torch.argsort(group_of[real], stable=True)]
        counts = torch.bincount(group_of[real], minlength=self.n_groups)
        self.indptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(self.indptr.device)
        self.members = members.to(self.indptr.device)

    def expand(
        self, keys: torch.Tensor, values: torch.Tensor, width: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse (row, group) values -> the same value for (row, member) of each group."""
        row, group = keys // self.n_groups, keys % self.n_groups
        start, count = self.indptr[group], self.indptr[group + 1] - self.indptr[group]
        entry = torch.repeat_interleave(torch.arange(len(keys), device=keys.device), count)
        offset = torch.arange(len(entry), device=keys.device) - (count.cumsum(0) - count)[entry]
        member = self.members[start[entry] + offset]
        return row[entry] * width + member, values[entry]
