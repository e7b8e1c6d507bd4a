"""Whole tensors and sharded modules' state dicts: slicing shards, renaming keys.

A sharded ``EntityTables`` holds its tables in bag form (``collection.embedding_bags.*``), the
ordinary model in its own (``collection.embeddings.*``); these helpers move state between the
two (``recsys.training.distributed``, ``distributed_checkpoint``, ``distributed_trainer``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

BAGS, TABLES = "collection.embedding_bags.", "collection.embeddings."


def shard_of(full: torch.Tensor, meta) -> torch.Tensor:
    """The part of a whole tensor that a shard (its ``ShardMetadata``) holds."""
    index = tuple(
        slice(o, o + s) for o, s in zip(meta.shard_offsets, meta.shard_sizes, strict=True)
    )
    return full[index]


def bag_keys(full: Mapping[str, torch.Tensor], sharded: nn.Module) -> dict[str, torch.Tensor]:
    """Whole tensors keyed like the sharded module (``EntityTables`` in their bag form)."""
    return {key: full[key] if key in full else full[key.replace(BAGS, TABLES)]
            for key in sharded.state_dict()}  # fmt: skip


def plain_state(state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """A sharded module's whole state (``ShardedModel.full_state``) keyed like ``model``."""
    wanted = set(model.state_dict())
    out = {}
    for key, value in state.items():
        plain = key.replace(BAGS, TABLES)
        out[plain if key not in wanted and plain in wanted else key] = value
    return out
