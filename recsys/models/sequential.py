"""A causal transformer over a viewer's behaviour tokens (the SASRec family).

A token is an entity (a product, or a live room named by its streamer) together with the
action that touched it and the time since the previous token. Its input vector is

    entity_emb * sqrt(dim) + action_emb + gap_emb + sum(side feature embs) + position_emb

where entity embeddings come from the shared named tables (``EntityTables``: "product",
"streamer"), side features are per-entity codes (a product's category or price band) looked up
in their own tables ("product_category", ...) or, for a product's seller, in the streamer table,
and positions count back from the latest token
(windows are left-padded, so the last slot is always the most recent token).

``n_blocks`` pre-norm transformer blocks follow, each attending only to earlier, non-padding
tokens (and itself). A head per predicted entity kind scores the hidden state against that
kind's entity table (weights tied with the input embeddings): "product" always, and "streamer"
(next live room) when the data has room tokens. Losses live in ``recsys.tasks.sequential``;
scoring for evaluation in ``recsys.recommenders.sequential``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys.inputs.tokens import ACTIONS, KIND_TABLES, PRODUCT, ROOM
from recsys.inputs.windows import SequenceBatch
from recsys.models.embeddings import EntityTables
from recsys.models.repeat_bonus import Members, RepeatBonus, RepeatScores
from recsys.models.row_dropout import RowDropout

# Side features whose codes index an entity table rather than a table of their own.
SHARED_SIDE_TABLES = {"seller": "streamer"}


@dataclass(frozen=True)
class SequentialConfig:
    """Architecture; entity counts of 0 are filled from the data before building."""

    n_products: int = 0  # product vocabulary size (padding and unknown rows included)
    n_streamers: int = 0  # 0: item-only streams, no room tokens and no room head
    maxlen: int = 50
    dim: int = 64
    n_blocks: int = 2
    n_heads: int = 1
    dropout: float = 0.2  # on embeddings, residual branches and the feed-forward layer
    # Dropout on attention weights forces the unfused attention kernel, which materialises every
    # (L, L) matrix and costs more than the rest of the model at L = 200 on CPU; off by default.
    attention_dropout: float = 0.0
    n_gap_buckets: int = 0  # 0: no time-gap embedding (data without real times)
    use_actions: bool = True
    # Learned bonus for entities already in the window: returning to a room or product is
    # the norm on live platforms, and a dot product with the state alone under-ranks repeats.
    repeat_bonus: bool = False
    # The product head's repeat bonus also counts entries into the room of each product's seller
    # (the "seller" side feature): a viewer buys what the rooms they keep entering present,
    # which a state vector alone under-ranks for products never touched before.
    seller_bonus: bool = False
    # Output embeddings = entity embedding + its side-feature embeddings, so that what is learnt
    # about a brand, category or seller carries over to its rarely seen entities.
    side_in_output: bool = False
    # A per-user vector added to every input slot (the "user" table, shared by name with the
    # two-tower model): long-run taste that a window of recent tokens may not show.
    user_embedding: bool = False
    n_users: int = 0  # users of the token log (filled from the data when user_embedding)
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} must be divisible by n_heads {self.n_heads}")
        if self.maxlen < 1 or self.n_blocks < 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"invalid SequentialConfig: {self}")
        if self.seller_bonus and not self.repeat_bonus:
            raise ValueError("seller_bonus extends the repeat bonus: set repeat_bonus too")

    @property
    def heads(self) -> tuple[str, ...]:
        return ("product", "streamer") if self.n_streamers else ("product",)

    @property
    def head_kinds(self) -> dict[str, int]:
        return {KIND_TABLES[k]: k for k in (PRODUCT, ROOM) if KIND_TABLES[k] in self.heads}


class Block(nn.Module):
    """Pre-norm self-attention and position-wise feed-forward, both residual."""

    def __init__(
        self, dim: int, n_heads: int, dropout: float, attention_dropout: float, maxlen: int
    ) -> None:
        super().__init__()
        self.n_heads, self.attention_dropout = n_heads, attention_dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), RowDropout(dropout, width=maxlen), nn.Linear(dim, dim)
        )
        self.drop = RowDropout(dropout, width=maxlen)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        """``allowed``: (B, 1, L, L) which slots each slot attends to; None for causal."""
        b, length, dim = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, length, 3, self.n_heads, dim // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, H, L, dim / H)
        p = self.attention_dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=p, is_causal=allowed is None
        )
        a = a.transpose(1, 2).reshape(b, length, dim)  # (B, L, dim)
        x = x + self.drop(self.out(a))
        return x + self.drop(self.ffn(self.norm2(x)))


def _regroup_sellers(model: SequentialModel, incompatible_keys) -> None:
    """Loaded seller codes may differ from those the model was built with: regroup by them."""
    model.sellers.regroup(model.codes_product_seller)


def attention_mask(real: torch.Tensor) -> torch.Tensor | None:
    """(B, 1, L, L) of real slots (B, L): attend to earlier real tokens, and every slot to itself
    so that padded rows stay finite. None when every slot is real: the mask is then the causal
    one, and the attention kernel given ``is_causal`` skips the blocks above the diagonal (the
    same numbers, tested)."""
    if bool(real.all()):
        return None
    length = real.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=real.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=real.device)
    return ((causal & real[:, None, :]) | eye).unsqueeze(1)  # (B, 1, L, L), over heads


class SequentialModel(nn.Module):
    """Behaviour tokens (B, L) -> hidden states (B, L, dim) -> per-head entity scores."""

    def __init__(
        self,
        config: SequentialConfig,
        *,
        side_features: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        tables: EntityTables | None = None,
    ) -> None:
        super().__init__()
        if config.n_products < 3:
            raise ValueError("SequentialConfig.n_products must be set from the data (>= 3)")
        self.config = config
        # Side feature "<entity>_<feature>": per-entity codes looked up in their own table, except
        # a product's seller, which is looked up in the shared streamer table.
        side = {
            f"{entity}_{name}": np.asarray(codes, dtype=np.int64)
            for entity, feats in (side_features or {}).items()
            for name, codes in feats.items()
        }
        self.side_tables = {n: SHARED_SIDE_TABLES.get(n.split("_", 1)[1], n) for n in side}
        sizes = {"product": config.n_products}
        if config.n_streamers:
            sizes["streamer"] = config.n_streamers
        if config.user_embedding:
            if config.n_users < 1:
                raise ValueError("SequentialConfig.n_users must be set from the data (>= 1)")
            sizes["user"] = config.n_users + 1  # row 0: padding; token-log user u is row u + 1
        own = {n: c for n, c in side.items() if self.side_tables[n] == n}
        sizes.update({name: int(codes.max(initial=0)) + 1 for name, codes in own.items()})
        self.tables = tables or EntityTables(sizes=sizes, dim=config.dim, init_std=config.init_std)
        self._check_tables(sizes)
        for name, table in self.side_tables.items():
            if table not in self.tables.sizes:
                raise ValueError(f"side feature {name!r} needs the {table!r} table")
        self.side_names = tuple(side)
        for name, codes in side.items():
            self.register_buffer(f"codes_{name}", torch.from_numpy(codes), persistent=True)
        self.action_emb = nn.Embedding(len(ACTIONS), config.dim, padding_idx=0)
        self.gap_emb = nn.Embedding(max(config.n_gap_buckets, 1), config.dim, padding_idx=0)
        self.pos_emb = nn.Embedding(config.maxlen, config.dim)
        for emb in (self.action_emb, self.gap_emb, self.pos_emb):
            nn.init.normal_(emb.weight, 0.0, config.init_std)
        self.drop = RowDropout(config.dropout, width=config.maxlen)
        self.blocks = nn.ModuleList(
            Block(config.dim, config.n_heads, config.dropout, config.attention_dropout,
                  config.maxlen)
            for _ in range(config.n_blocks)
        )  # fmt: skip
        self.norm = nn.LayerNorm(config.dim)
        self.repeat = (
            nn.ModuleDict({h: RepeatBonus(config.dim) for h in config.heads})
            if config.repeat_bonus
            else None
        )
        self.sellers = self._sellers(side) if config.seller_bonus else None
        if self.sellers is not None:
            self.register_load_state_dict_post_hook(_regroup_sellers)

    def _sellers(self, side: Mapping[str, np.ndarray]) -> Members:
        if "product_seller" not in side or not self.config.n_streamers:
            raise ValueError("seller_bonus needs room tokens and the product side feature 'seller'")
        return Members(side["product_seller"], self.config.n_streamers)

    def _check_tables(self, sizes: Mapping[str, int]) -> None:
        for name, n in sizes.items():
            if self.tables.sizes.get(name) != n:
                raise ValueError(
                    f"shared tables: {name!r} has {self.tables.sizes.get(name)} rows, need {n}"
                )

    @property
    def heads(self) -> tuple[str, ...]:
        return self.config.heads

    def _lookup(self, requests: list[tuple[str, torch.Tensor]]) -> list[torch.Tensor]:
        """One embedding-collection call for many (table, (B, L) ids) requests, in order.

        Requests for the same table are joined along the slots and split again afterwards.
        """
        by_table: dict[str, list[int]] = {}
        for i, (table, _) in enumerate(requests):
            by_table.setdefault(table, []).append(i)
        joined = {t: torch.cat([requests[i][1] for i in idx], dim=1) for t, idx in by_table.items()}
        vectors = self.tables(joined)  # table -> (B, sum of L, dim)
        out: list[torch.Tensor] = [None] * len(requests)
        for table, idx in by_table.items():
            parts = vectors[table].split([requests[i][1].shape[1] for i in idx], dim=1)
            for i, part in zip(idx, parts, strict=True):
                out[i] = part
        return out

    def embed(self, batch: SequenceBatch) -> torch.Tensor:
        """(B, L) tokens -> (B, L, dim) input vectors (padding slots are zero)."""
        ids = {"product": torch.where(batch.kind == PRODUCT, batch.entity, 0)}
        if self.config.n_streamers:
            ids["streamer"] = torch.where(batch.kind == ROOM, batch.entity, 0)
        requests = [(entity, ids[entity]) for entity in self.heads]
        for name in self.side_names:
            codes = getattr(self, f"codes_{name}")[ids[name.split("_", 1)[0]]]  # (B, L)
            requests.append((self.side_tables[name], codes))
        if self.config.user_embedding:
            if batch.user is None:
                raise ValueError("this model embeds users: the batch must carry them")
            requests.append(("user", (batch.user + 1)[:, None]))  # (B, 1)
        vectors = self._lookup(requests)
        # Sums in place: a fresh (B, L, dim) tensor per term costs more than the adds.
        x = sum(vectors[: len(self.heads)]) * math.sqrt(self.config.dim)
        for v in vectors[len(self.heads) :]:
            x.add_(v)  # a (B, 1, dim) user vector broadcasts over the slots
        if self.config.use_actions:
            x.add_(self.action_emb(batch.action))
        if self.config.n_gap_buckets:
            x.add_(self.gap_emb(batch.gap))
        width = batch.kind.shape[1]
        positions = torch.arange(self.config.maxlen - width, self.config.maxlen, device=x.device)
        x.add_(self.pos_emb(positions))  # (L, dim) broadcast over the batch
        return self.drop(x) * (batch.kind > 0).unsqueeze(-1).to(x.dtype)

    def forward(self, batch: SequenceBatch) -> torch.Tensor:
        """(B, L, dim) hidden states; slot t depends only on tokens at slots <= t."""
        if batch.kind.shape[1] > self.config.maxlen:
            raise ValueError(f"window of {batch.kind.shape[1]} > maxlen {self.config.maxlen}")
        x = self.embed(batch)
        allowed = attention_mask(batch.kind > 0)
        for block in self.blocks:
            x = block(x, allowed)
        return self.norm(x)

    def head_weight(self, head: str) -> torch.Tensor:
        """(n_entities, dim) output embeddings of a head (tied with the input table)."""
        if head not in self.heads:
            raise KeyError(f"no head {head!r}; heads: {', '.join(self.heads)}")
        weight = self.tables.weight(head)
        if self.config.side_in_output:
            for name in self.side_names:
                if name.startswith(f"{head}_"):
                    codes = getattr(self, f"codes_{name}")  # (n_entities,)
                    weight = weight + self.tables.weight(self.side_tables[name])[codes]
        return weight

    @property
    def whole_tables(self) -> tuple[str, ...]:
        """The tables ``head_weight`` reads whole (sharded training fetches them once a step)."""
        names = list(self.heads)
        if self.config.side_in_output:
            names += [self.side_tables[n] for n in self.side_names
                      if n.split("_", 1)[0] in self.heads]  # fmt: skip
        return tuple(dict.fromkeys(names))

    def logits(self, hidden: torch.Tensor, head: str) -> torch.Tensor:
        """(N, dim) hidden states -> (N, n_entities) scores of every entity of the head."""
        return hidden @ self.head_weight(head).t()

    def repeats(
        self, batch: SequenceBatch, hidden: torch.Tensor, query: torch.Tensor, head: str
    ) -> RepeatScores | None:
        """Repeat bonuses of the head at the query slots (None when the model has none)."""
        if self.repeat is None:
            return None
        width = self.tables.sizes[head]
        via = self.sellers if head == "product" else None
        return self.repeat[head](batch, hidden, query, self.config.head_kinds[head], width, via)

    def score_last(self, batch: SequenceBatch, head: str) -> torch.Tensor:
        """(B, n_entities) float32 scores of every entity after each user's latest token."""
        hidden = self(batch)  # (B, L, dim)
        # Mixed precision stops here (validation runs under autocast): bfloat16 scores would
        # tie many items.
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            last = hidden[:, -1].float()  # (B, dim); windows are left-padded
            scores = last @ self.head_weight(head).float().t()
            query = torch.zeros(batch.kind.shape, dtype=torch.bool, device=last.device)
            query[:, -1] = True
            bonus = self.repeats(batch, hidden.float(), query, head)
            if bonus is None:
                return scores
            scale = self.repeat[head].score_scale
            return replace(bonus, values=bonus.values.float() * scale).add_to(scores)
