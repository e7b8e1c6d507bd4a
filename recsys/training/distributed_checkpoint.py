"""DCP checkpoints of a sharded model: model and optimizer state at any world size.

Written with ``torch.distributed.checkpoint``: sharded tables and their Adam moments as
``ShardedTensor``s (the moments sharded like their parameters), which DCP re-slices on load, so
a run saved at one world size resumes at another (2 ranks -> 1 process, 1 -> 2), and
``load_full_checkpoint`` reads one whole in a single process, keyed like the ordinary model.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed._shard.sharded_tensor import Shard, ShardedTensor

from recsys.training.distributed import ShardedModel, collections
from recsys.training.state_keys import plain_state

MOMENTS = ("exp_avg", "exp_avg_sq")  # Adam's per-parameter state besides its step count


def optimizer_state(sharded: ShardedModel, optimizer: torch.optim.Optimizer) -> dict:
    """Adam's moments keyed like the parameters, sharded like them (so DCP can re-slice)."""
    states = sharded.module.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, p in sharded.dense_parameters().items():
        state = optimizer.state.get(p) or {}
        for name in MOMENTS:
            out[f"{key}.{name}"] = _like(states[key], state.get(name, torch.zeros_like(p)))
        out[f"{key}.step"] = torch.as_tensor(state.get("step", 0.0), dtype=torch.float32)
    if sharded.config.fused_optimizer != "none":
        fused = sharded.dmp.fused_optimizer.state_dict()
        out.update({f"fused.{k}": v for k, v in _flat(fused)})
    return out


def save(sharded: ShardedModel, path: Path, optimizer: torch.optim.Optimizer) -> None:
    """Write model and optimizer state into the folder ``path`` (every rank calls this)."""
    state = {"model": sharded.module.state_dict(), "optim": optimizer_state(sharded, optimizer)}
    dcp.save(state, checkpoint_id=str(path))


def load(sharded: ShardedModel, path: Path, optimizer: torch.optim.Optimizer) -> None:
    """Read a checkpoint written at any world size into this rank's shards and optimizer."""
    state = {"model": sharded.module.state_dict(), "optim": optimizer_state(sharded, optimizer)}
    dcp.load(state, checkpoint_id=str(path))
    saved = state["optim"]
    for key, p in sharded.dense_parameters().items():
        moments = {n: _local(saved[f"{key}.{n}"]) for n in MOMENTS}
        optimizer.state[p] = {"step": saved[f"{key}.step"].clone().float(), **moments}
    if sharded.config.fused_optimizer != "none":
        fused = sharded.dmp.fused_optimizer.state_dict()
        flat = {k.removeprefix("fused."): v for k, v in saved.items() if k.startswith("fused.")}
        _unflat(fused, flat)
        sharded.dmp.fused_optimizer.load_state_dict(fused)


def load_full_checkpoint(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """A checkpoint's model state read whole in one process, keyed like ``model`` (its
    ``EntityTables`` in their ordinary form)."""
    probe = copy.deepcopy(model)
    collections(probe)  # the bag form the checkpoint was written in
    state = {"model": probe.state_dict()}
    dcp.load(state, checkpoint_id=str(path), no_dist=True)
    return plain_state(state["model"], model)


def _like(template: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """``local`` (this rank's part) as a tensor sharded like ``template``."""
    if not isinstance(template, ShardedTensor):
        return local.detach()
    shards = template.local_shards()
    if len(shards) > 1:
        raise ValueError("distributed: a rank holding several shards of one table is not supported")
    parts = [
        Shard(tensor=local.detach().reshape(s.tensor.shape), metadata=s.metadata) for s in shards
    ]
    return ShardedTensor._init_from_local_shards_and_global_metadata(parts, template.metadata())


def _local(value: torch.Tensor) -> torch.Tensor:
    if isinstance(value, ShardedTensor):
        shards = value.local_shards()
        return shards[0].tensor.clone() if shards else torch.zeros(0)
    return value.clone()


def _flat(tree: Mapping, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """Nested optimizer state as (dotted key, tensor) pairs (DCP wants flat tensor leaves)."""
    out = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += _flat(value, f"{name}.")
        elif isinstance(value, torch.Tensor):
            out.append((name, value))
    return out


def _unflat(tree: dict, flat: Mapping[str, torch.Tensor], prefix: str = "") -> None:
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _unflat(value, flat, f"{name}.")
        elif name in flat:
            tree[key] = flat[name]
