"""The two-tower retrieval model: a query tower for the viewer, a candidate tower per head.

Query tower (per head; the pooled inputs are shared): the concatenation of

    user id | bag of recent products | bags of their side features (category, price band,
    seller, ...) | bag of recent rooms | bag of their categories | hour | weekday |
    current room | demographics | a projection of the profile features

through an MLP, L2-normalised. Bags are weighted sums whose weights are a softmax of a learned
score per age bucket, so recent entries can count more. Candidate towers, also MLPs over
concatenated embeddings and L2-normalised:

* product: id | category | brand | price band | imported | seller (the streamer table) |
  bag of keywords;
* live room ("streamer"): streamer id | streamer category | the product presented now (the
  product table) | that product's category.

All sparse inputs go through one torchrec ``EmbeddingBagCollection`` (``EntityBags``) whose
tables are named as the sequential model's ("user", "product", "streamer",
"product_category", ...), so trained weights move between the two models.

Score of a query q and candidate c: ``<q, c> / temperature + bonus``. The temperature is
learned (on a log scale). The bonus is the repeat signal a dot product under-ranks: for a
candidate that sits in the query's bag (a product bought before, a room visited before; for a
product also its seller among the rooms visited), ``gain * log(1 + sum exp(w_action + w_age))``
over the bag slots that hold it; scoring multiplies it by a per-head scale that can be
calibrated on validation. It is sparse (only entities in the bag get one), so retrieval adds it
to the inner product for the bag's entities (``TwoTowerRecommender.repeat_scores``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys.inputs.tokens import ACTIONS
from recsys.inputs.two_tower import N_AGE_BUCKETS, TwoTowerBatch
from recsys.models.embeddings import BagRequest, EntityBags
from recsys.models.repeat_bonus import RepeatScores
from recsys.models.row_dropout import RowDropout
from recsys.models.sequential import SHARED_SIDE_TABLES

N_HOURS, N_WEEKDAYS = 25, 8  # 0 = unknown


@dataclass(frozen=True)
class TwoTowerConfig:
    """Architecture; sizes of 0 are filled from the data before building."""

    n_users: int = 0
    n_products: int = 0
    n_streamers: int = 0  # 0: item-only data (no room bag, no room head)
    dim: int = 64  # width of every embedding table (one width, as the sequential model's)
    out_dim: int = 64  # tower output width
    hidden: int = 256  # MLP hidden width; 0: one linear layer per tower
    bag_size: int = 200  # recent products (and rooms) in the query and its repeat bonus
    dropout: float = 0.3
    user_id: bool = True
    context: bool = True  # hour, weekday and current room (timed data)
    demographics: bool = True  # worlds: the users table's categorical columns
    profile: bool = False  # worlds: profile snapshot features
    n_profile: int = 0  # profile width, from the data
    room_showing: bool = True  # room tower reads the product on show
    repeat_bonus: bool = True
    temperature: float = 0.05  # initial value
    learn_temperature: bool = True
    init_std: float = 0.02
    # Sum the history bags in PyTorch, not in the lookup kernel: sharded and unsharded runs
    # then agree to the bit (recsys.models.embeddings.EntityBags), at bag_size x the memory.
    portable_pooling: bool = False

    def __post_init__(self) -> None:
        if self.dim < 1 or self.out_dim < 1 or self.hidden < 0 or self.bag_size < 1:
            raise ValueError(f"invalid TwoTowerConfig: {self}")
        if not 0.0 <= self.dropout < 1.0 or self.temperature <= 0:
            raise ValueError(f"invalid TwoTowerConfig: {self}")

    @property
    def heads(self) -> tuple[str, ...]:
        return ("product", "streamer") if self.n_streamers else ("product",)


def mlp(n_in: int, hidden: int, n_out: int, dropout: float, rows: str = "batch") -> nn.Module:
    """A tower; ``rows``: whether its inputs are the batch's rows or a set every part of a
    split batch computes whole (``recsys.models.row_dropout``)."""
    if hidden == 0:
        return nn.Linear(n_in, n_out)
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.ReLU(), RowDropout(dropout, rows=rows), nn.Linear(hidden, n_out)
    )


class BagBonus(nn.Module):
    """Sparse (query, entity) bonus from the bag slots that hold the entity (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.action_w = nn.Embedding(len(ACTIONS), 1)
        self.age_w = nn.Embedding(N_AGE_BUCKETS, 1)
        for emb in (self.action_w, self.age_w):
            nn.init.zeros_(emb.weight)
        self.gain = nn.Parameter(torch.ones(()))

    def forward(
        self, entity: torch.Tensor, action: torch.Tensor, age: torch.Tensor, width: int
    ) -> RepeatScores:
        """(B, N) bag -> bonuses keyed row * width + entity."""
        b, s = (entity > 0).nonzero(as_tuple=True)
        # The tables read as in nn.Embedding, without its module call (one request's cost).
        v = (F.embedding(action[b, s], self.action_w.weight)
             + F.embedding(age[b, s], self.age_w.weight)).squeeze(-1)  # fmt: skip
        flat = b * width + entity[b, s]
        keys, inverse = torch.unique(flat, sorted=True, return_inverse=True)
        total = torch.zeros(len(keys), device=v.device).index_add_(
            0, inverse, v.float().clamp(max=30.0).exp()
        )
        return RepeatScores(keys, self.gain * torch.log1p(total), width)


class TwoTowerModel(nn.Module):
    """Query and candidate towers over shared pooled tables (module docstring)."""

    def __init__(
        self,
        config: TwoTowerConfig,
        *,
        side_features: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        keywords: np.ndarray | None = None,
        demographics: Mapping[str, int] | None = None,
        tables: EntityBags | None = None,
    ) -> None:
        """``side_features``: entity ("product", "streamer") -> feature -> (n,) codes, 0 =
        missing (a product's "seller" indexes the streamer table); ``keywords``: (n_products,
        K) token codes, 0 = padding; ``demographics``: name -> number of codes (users table);
        ``tables``: existing pooled tables to share (names and shapes must fit)."""
        super().__init__()
        if config.n_products < 3 or (config.user_id and config.n_users < 1):
            raise ValueError("TwoTowerConfig sizes must be set from the data")
        if config.profile and config.n_profile < 1:
            raise ValueError("TwoTowerConfig.profile needs n_profile from the data")
        self.config = config
        self._register_codes(side_features or {}, keywords)
        self.demographic_names = tuple(demographics or ()) if config.demographics else ()
        sizes = self._sizes(demographics or {})
        self.tables = tables or EntityBags(
            sizes=sizes,
            dim=config.dim,
            init_std=config.init_std,
            portable_pooling=config.portable_pooling,
        )
        for name, n in sizes.items():
            if self.tables.sizes.get(name) != n:
                have = self.tables.sizes.get(name)
                raise ValueError(f"shared tables: {name!r} has {have} rows, need {n}")
        self._build_towers()
        self._build_bonus()

    # -- layout --------------------------------------------------------------------------------

    def _register_codes(self, side_features, keywords: np.ndarray | None) -> None:
        """Per-entity side feature codes ("product_category" ...) and keyword bags as buffers."""
        c = self.config
        side = {
            f"{entity}_{name}": np.asarray(codes, dtype=np.int64)
            for entity, feats in side_features.items()
            if entity == "product" or (entity == "streamer" and c.n_streamers)
            for name, codes in feats.items()
            if c.n_streamers or name not in SHARED_SIDE_TABLES
        }
        self.side_tables = {n: SHARED_SIDE_TABLES.get(n.split("_", 1)[1], n) for n in side}
        self.side_sizes = {n: int(codes.max(initial=0)) + 1 for n, codes in side.items()}
        for name, codes in side.items():
            self.register_buffer(f"codes_{name}", torch.from_numpy(codes))
        kw = keywords if keywords is not None else np.zeros((c.n_products, 0), np.int64)
        self.register_buffer("keywords", torch.from_numpy(np.asarray(kw, dtype=np.int64)))

    def _sizes(self, demographics: Mapping[str, int]) -> dict[str, int]:
        c = self.config
        sizes = {"product": c.n_products}
        if c.user_id:
            sizes["user"] = c.n_users
        if c.n_streamers:
            sizes["streamer"] = c.n_streamers
        sizes.update({n: k for n, k in self.side_sizes.items() if self.side_tables[n] == n})
        if self.keywords.shape[1]:
            sizes["product_keyword"] = int(self.keywords.max()) + 1
        if c.context:
            sizes.update(hour=N_HOURS, weekday=N_WEEKDAYS)
        sizes.update({f"user_{d}": int(demographics[d]) for d in self.demographic_names})
        return sizes

    def _sides(self, entity: str) -> list[str]:
        return [n for n in self.side_tables if n.startswith(f"{entity}_")]

    def query_slots(self) -> list[tuple[str, str]]:
        """(slot, table) of every pooled query input, in order; "products:<side>" pools the
        side feature of the products bag."""
        c = self.config
        slots = [("user", "user")] if c.user_id else []
        slots += [("products", "product")]
        slots += [(f"products:{n}", self.side_tables[n]) for n in self._sides("product")]
        if c.n_streamers:
            slots += [("rooms", "streamer")] + [(f"rooms:{n}", n) for n in self._sides("streamer")]
        if c.context:
            slots += [("hour", "hour"), ("weekday", "weekday")]
            slots += [("room", "streamer")] if c.n_streamers else []
        return slots + [(f"user_{d}", f"user_{d}") for d in self.demographic_names]

    def candidate_slots(self, head: str) -> list[tuple[str, str]]:
        """(slot, table) of every pooled input of a candidate tower, in order."""
        if head == "product":
            slots = [("id", "product")]
            slots += [(f"id:{n}", self.side_tables[n]) for n in self._sides("product")]
            return slots + ([("keywords", "product_keyword")] if self.keywords.shape[1] else [])
        slots = [("id", "streamer")] + [(f"id:{n}", n) for n in self._sides("streamer")]
        if self.config.room_showing:
            slots.append(("showing", "product"))
            if "product_category" in self.side_tables:
                slots.append(("showing:product_category", "product_category"))
        return slots

    def _build_towers(self) -> None:
        c = self.config
        self.recency = nn.Embedding(2 * N_AGE_BUCKETS, 1)  # products' ages, then rooms'
        nn.init.zeros_(self.recency.weight)
        width = max(c.n_profile, 1)
        self.profile_proj = nn.Linear(width, c.dim)
        self.register_buffer("profile_mean", torch.zeros(width))
        self.register_buffer("profile_std", torch.ones(width))
        n_query = (len(self.query_slots()) + int(c.profile)) * c.dim
        self.query_mlp = nn.ModuleDict(
            {h: mlp(n_query, c.hidden, c.out_dim, c.dropout) for h in c.heads}
        )
        self.candidate_mlp = nn.ModuleDict(
            {
                h: mlp(len(self.candidate_slots(h)) * c.dim, c.hidden, c.out_dim, c.dropout, "all")
                for h in c.heads
            }
        )
        self.log_temperature = nn.Parameter(
            torch.tensor(math.log(c.temperature)), requires_grad=c.learn_temperature
        )

    def _build_bonus(self) -> None:
        """Bonus name -> the head whose candidates it scores, and its weights."""
        c = self.config
        pairs = {"product": "product"}
        if c.n_streamers:
            pairs["room"] = "streamer"
        if "product_seller" in self.side_tables:
            pairs["seller"] = "product"
        self.bonus_pairs = pairs if c.repeat_bonus else {}
        self.bonus = nn.ModuleDict({name: BagBonus() for name in self.bonus_pairs})
        # Scoring multiplies each head's bonus by a scale calibrated on validation after
        # training (how strongly to favour repeats in a ranking differs from the softmax odds).
        for head in c.heads:
            self.register_buffer(f"bonus_scale_{head}", torch.ones(()))

    @property
    def heads(self) -> tuple[str, ...]:
        return self.config.heads

    def n_entities(self, head: str) -> int:
        return self.config.n_products if head == "product" else self.config.n_streamers

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    def codes(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"codes_{name}")[ids]

    # -- towers --------------------------------------------------------------------------------

    def _bag_weights(self, entity: torch.Tensor, age: torch.Tensor, offset: int) -> torch.Tensor:
        """(B, N) softmax over each bag's real slots of the learned score of their age."""
        score = F.embedding(age + offset, self.recency.weight).squeeze(-1)  # no module call
        score = score.masked_fill(entity == 0, float("-inf"))
        return torch.softmax(score, dim=1).nan_to_num(0.0)  # an empty bag: all zeros

    def _requests(
        self,
        slots: list[tuple[str, str]],
        bags: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]],
    ) -> list[BagRequest]:
        """One request per slot: "<bag>" or "<bag>:<side feature>" read ``bags``."""
        out = []
        for slot, table in slots:
            base, _, side = slot.partition(":")
            ids, weights = bags[base]
            out.append((table, self.codes(side, ids) if side else ids, weights))
        return out

    def query(
        self, batch: TwoTowerBatch, head: str, pooled: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, out_dim) L2-normalised query embeddings for ``head``; ``pooled``: the batch's
        ``query_input``, when already computed for another head."""
        x = self.query_input(batch) if pooled is None else pooled
        return F.normalize(self.query_mlp[head](x), dim=-1)

    def query_input(self, batch: TwoTowerBatch) -> torch.Tensor:
        """(B, F) pooled query features, the input of every head's query MLP."""
        one = lambda x: (x[:, None], None)  # noqa: E731 - (B,) ids as one-id bags
        bags = {
            "user": one(batch.user),
            "products": (
                batch.product_entity,
                self._bag_weights(batch.product_entity, batch.product_age, 0),
            ),
            "rooms": (
                batch.room_entity,
                self._bag_weights(batch.room_entity, batch.room_age, N_AGE_BUCKETS),
            ),
            "hour": one(batch.hour),
            "weekday": one(batch.weekday),
            "room": one(batch.room),
        }
        for i, name in enumerate(self.demographic_names):
            bags[f"user_{name}"] = one(batch.demographics[:, i])
        blocks = self.tables(self._requests(self.query_slots(), bags))
        if self.config.profile:
            x = (batch.profile - self.profile_mean) / self.profile_std
            blocks.append(self.profile_proj(x))
        return torch.cat(blocks, dim=1)

    def candidates(
        self, head: str, ids: torch.Tensor, showing: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(C, out_dim) L2-normalised embeddings of candidate entities of ``head``; a room
        reads ``showing`` (C,), the product it presents (default: none)."""
        if head not in self.heads:
            raise KeyError(f"no head {head!r}; heads: {', '.join(self.heads)}")
        shown = showing if showing is not None else torch.zeros_like(ids)
        bags = {
            "id": (ids[:, None], None),
            "showing": (shown[:, None], None),
            "keywords": (self.keywords[ids], None),  # (C, K)
        }
        blocks = self.tables(self._requests(self.candidate_slots(head), bags))
        return F.normalize(self.candidate_mlp[head](torch.cat(blocks, dim=1)), dim=-1)

    # -- the repeat bonus ----------------------------------------------------------------------

    def _bonus_parts(self, batch: TwoTowerBatch, head: str) -> list[tuple[str, RepeatScores]]:
        """(pair name, sparse scores) of the bonuses that apply to ``head``'s candidates."""
        parts = []
        for name, target in self.bonus_pairs.items():
            if target != head:
                continue
            if name == "product":
                bag = (batch.product_entity, batch.product_action, batch.product_age)
                width = self.config.n_products
            else:
                bag = (batch.room_entity, torch.zeros_like(batch.room_entity), batch.room_age)
                width = self.config.n_streamers
            parts.append((name, self.bonus[name](*bag, width)))
        return parts

    def _bonus_entities(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """What the bonus ``name`` looks up for candidates ``ids``: their seller, or them."""
        return self.codes("product_seller", ids) if name == "seller" else ids

    def bonus_inputs(
        self, batch: TwoTowerBatch, head: str, ids: torch.Tensor
    ) -> list[tuple[torch.Tensor, RepeatScores]]:
        """What ``pair_bonus`` spreads: per bonus, (the entity each of ``ids`` (C,) looks up,
        the batch's sparse bonuses)."""
        return [(self._bonus_entities(n, ids), s) for n, s in self._bonus_parts(batch, head)]

    def pair_bonus(self, batch: TwoTowerBatch, head: str, ids: torch.Tensor) -> torch.Tensor:
        """(B, C) bonus of every query for every candidate in ``ids`` (C,)."""
        out = torch.zeros(batch.size, len(ids), device=ids.device)
        for name, scores in self._bonus_parts(batch, head):
            # Scatter the bag's bonuses into (B, distinct candidates), then spread to columns.
            wanted, column = torch.unique(self._bonus_entities(name, ids), return_inverse=True)
            row, entity = scores.keys // scores.width, scores.keys % scores.width
            pos = torch.searchsorted(wanted, entity).clamp(max=len(wanted) - 1)
            hit = wanted[pos] == entity
            dense = torch.zeros(batch.size, len(wanted), device=ids.device)
            dense = dense.index_put((row[hit], pos[hit]), scores.values[hit], accumulate=True)
            out = out + dense[:, column]
        return out

    def dense_bonus(self, batch: TwoTowerBatch, head: str) -> torch.Tensor:
        """(B, n_entities) bonus of every query for every entity of ``head``, as scored: times
        the head's calibrated scale."""
        n = self.n_entities(head)
        ids = torch.arange(n, device=batch.user.device)
        out = torch.zeros(batch.size, n, device=batch.user.device)
        for name, scores in self._bonus_parts(batch, head):
            per_entity = scores.add_to(torch.zeros(batch.size, scores.width, device=out.device))
            out = out + per_entity[:, self._bonus_entities(name, ids)]
        return out * self.bonus_scale(head)

    def bonus_scale(self, head: str) -> torch.Tensor:
        return getattr(self, f"bonus_scale_{head}")

    # -- scores --------------------------------------------------------------------------------

    def logits(
        self,
        batch: TwoTowerBatch,
        head: str,
        ids: torch.Tensor,
        showing: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, C) scores of the batch's queries against candidates ``ids``."""
        q = self.query(batch, head)
        c = self.candidates(head, ids, showing)
        return (q @ c.t()) / self.temperature + self.pair_bonus(batch, head, ids)

    def score_all(
        self, batch: TwoTowerBatch, head: str, showing: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, n_entities) float32 scores of every entity of ``head``."""
        ids = torch.arange(self.n_entities(head), device=batch.user.device)
        q, c = self.query(batch, head), self.candidates(head, ids, showing)
        # Mixed precision stops here (validation runs under autocast): bfloat16 scores would
        # tie many items.
        with torch.autocast(device_type=q.device.type, enabled=False):
            scores = (q.float() / self.temperature.float()) @ c.float().t()
            return scores + self.dense_bonus(batch, head)
