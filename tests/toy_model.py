"""A toy sequential model: the causal mean of a window's token embeddings.

It exists to show what adding a model takes: this file (the ``nn.Module`` and its architecture
config), one config (``tests/conf/model/toy_mean.yaml``) and one registry entry (``TOY``). It
reuses the sequential task (losses) and the sequential recommender, whose module interface it
implements: ``tables`` (``EntityTables``), ``repeat``, ``forward``, ``head_weight``, ``repeats``
and ``score_last``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from recsys.inputs.tokens import KIND_TABLES, PRODUCT, ROOM
from recsys.inputs.windows import SequenceBatch
from recsys.models.embeddings import EntityTables
from recsys.recommenders.registry import SEQUENTIAL_LAGS, SEQUENTIAL_TASK, ModelSpec
from recsys.recommenders.sequential import SequentialRecommender
from recsys.tasks.sequential import LossConfig


@dataclass(frozen=True)
class ToyConfig:
    n_products: int = 0  # filled from the data
    n_streamers: int = 0
    n_users: int = 0
    maxlen: int = 20
    dim: int = 16
    n_gap_buckets: int = 0
    user_embedding: bool = False

    @property
    def heads(self) -> tuple[str, ...]:
        return ("product", "streamer") if self.n_streamers else ("product",)

    @property
    def head_kinds(self) -> dict[str, int]:
        return {KIND_TABLES[k]: k for k in (PRODUCT, ROOM) if KIND_TABLES[k] in self.heads}


class ToyMeanModel(nn.Module):
    """Tokens (B, L) -> causal mean of their embeddings (B, L, dim) -> per-head scores."""

    def __init__(self, config: ToyConfig, *, side_features: Mapping | None = None) -> None:
        super().__init__()
        self.config = config
        sizes = {
            h: n for h, n in (("product", config.n_products), ("streamer", config.n_streamers))
        }
        self.tables = EntityTables(sizes={h: sizes[h] for h in config.heads}, dim=config.dim)
        self.repeat = None

    def forward(self, batch: SequenceBatch) -> torch.Tensor:
        x = torch.zeros(*batch.kind.shape, self.config.dim, device=batch.kind.device)
        for head, kind in self.config.head_kinds.items():
            ids = torch.where(batch.kind == kind, batch.entity, 0)  # (B, L)
            x = x + self.tables.weight(head)[ids]  # (B, L, dim)
        real = (batch.kind > 0).unsqueeze(-1).float()  # (B, L, 1)
        return (x * real).cumsum(1) / real.cumsum(1).clamp(min=1.0)

    def head_weight(self, head: str) -> torch.Tensor:
        return self.tables.weight(head)

    def repeats(self, batch, hidden, query, head) -> None:
        return None

    def score_last(self, batch: SequenceBatch, head: str) -> torch.Tensor:
        return self(batch)[:, -1] @ self.head_weight(head).t()  # (B, n_entities)


TOY = ModelSpec(
    name="toy_mean",
    module=ToyMeanModel,
    architecture=ToyConfig,
    loss=LossConfig,
    recommender=SequentialRecommender,
    settings=SEQUENTIAL_TASK,
    lags=SEQUENTIAL_LAGS,
    sizes=("n_products", "n_streamers", "n_users"),
    benchmark_trainer={"progress": False, "checkpoint": False, "num_threads": 1},
)
