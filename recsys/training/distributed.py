"""Sharded training on torchrec: process group, sharding plan, DistributedModelParallel.

The one place besides ``recsys.models.embeddings`` that touches torchrec (and
``torch.distributed``). A model's embedding collections are sharded by
``DistributedModelParallel`` with a plan built per table from ``DistributedConfig`` (one
sharding type for every table, overridable per table); every other parameter (MLPs, attention,
data-parallel tables) is replicated, and its gradients are averaged over the ranks after each
backward pass, as DDP does. DMP's own DDP wrapper is not used because the tasks call model
methods other than ``forward`` (``logits``, ``head_weight``), which DDP's forward hook would miss.

What runs on CPU with torch 2.13 / torchrec 1.8 / fbgemm-gpu-cpu 1.8 (measured, see README's
"Scale-out"): an ``EmbeddingBagCollection`` with table_wise, row_wise, column_wise and
data_parallel sharding and the dense kernel, or the fused kernel with the exact SGD / Adagrad /
row-wise Adagrad optimizers. ``EmbeddingCollection`` shards only with the fused kernel, so
``EntityTables`` switch to their bag form (``as_bags``) before sharding. torchrec's planner
offers only the fused kernel for model-parallel tables on CPU and refuses row_wise there, so
plans are built per table (``construct_module_sharding_plan``) from the configured types.

Checkpoints of a ``ShardedModel`` are ``recsys.training.distributed_checkpoint``'s.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._shard.sharded_tensor import ShardedTensor
from torchrec import EmbeddingBagCollection
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.sharding_plan import (
    column_wise,
    construct_module_sharding_plan,
    data_parallel,
    row_wise,
    table_wise,
)
from torchrec.distributed.types import ShardingPlan
from torchrec.optim.optimizers import in_backward_optimizer_filter

from recsys.data.parquet_shards import InputConfig
from recsys.models.embeddings import EntityBags, EntityTables
from recsys.training.state_keys import bag_keys, shard_of

SHARDING_TYPES = ("table_wise", "row_wise", "column_wise", "data_parallel")
# Fused (in-backward) optimizers FBGEMM runs on CPU; Adam, partial row-wise Adam and LAMB assert.
FUSED_OPTIMIZERS = ("exact_sgd", "exact_adagrad", "exact_rowwise_adagrad")
BACKENDS = ("gloo", "nccl")


@dataclass(frozen=True)
class DistributedConfig:
    enabled: bool = False
    backend: str = "gloo"  # gloo (CPU) | nccl (CUDA)
    sharding: str = "row_wise"  # every table's sharding type unless named in ``tables``
    tables: Mapping[str, str] = field(default_factory=dict)  # table name -> sharding type
    fused_optimizer: str = "none"  # none: dense kernel + the trainer's Adam; or FUSED_OPTIMIZERS
    memory_budget_mb: float = 0.0  # per rank: table rows + optimizer state; 0: unchecked
    # Parts of its rows each rank runs one after another per step, losses averaged: one process
    # with micro_batches=W computes what W ranks with 1 do (the equivalence reference).
    micro_batches: int = 1
    # Where each rank's training rows come from: built whole in memory (the default), or its
    # own part of a Parquet file read in chunks (recsys.data.parquet_shards).
    input: InputConfig = field(default_factory=InputConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", dict(self.tables or {}))
        object.__setattr__(self, "input", InputConfig.of(self.input))
        if self.backend not in BACKENDS:
            raise ValueError(f"distributed.backend must be one of {BACKENDS}, got {self.backend!r}")
        for table, kind in {"(default)": self.sharding, **self.tables}.items():
            if kind not in SHARDING_TYPES:
                raise ValueError(
                    f"distributed sharding of table {table}: {kind!r} is not one of "
                    f"{SHARDING_TYPES} (table_row_wise, grid_shard and the planner's row-wise "
                    "plans do not run on CPU with this torchrec)"
                )
        if self.micro_batches < 1:
            raise ValueError(f"distributed.micro_batches must be >= 1, got {self.micro_batches}")
        if self.fused_optimizer not in ("none", *FUSED_OPTIMIZERS):
            raise ValueError(
                f"distributed.fused_optimizer must be none or one of {FUSED_OPTIMIZERS} (FBGEMM's "
                f"CPU kernels), got {self.fused_optimizer!r}"
            )

    @classmethod
    def of(cls, section: Mapping | None) -> DistributedConfig:
        return cls(**dict(section or {}))


# -- the process group -------------------------------------------------------------------------


def start(config: DistributedConfig) -> tuple[int, int]:
    """Join (or, outside ``torchrun``, open a one-process) group; (rank, world size)."""
    if not dist.is_initialized():
        if "RANK" not in os.environ:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            os.environ.update(
                RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
            )
        if config.backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(config.backend)
    return dist.get_rank(), dist.get_world_size()


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def broadcast(obj: object) -> object:
    """Rank 0's ``obj`` on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    dist.barrier()


def collective_device() -> torch.device:
    """Where tensors passed to collectives live: NCCL reduces only CUDA tensors."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def largest_over_ranks(value: int) -> int:
    if world_size() == 1:
        return value
    box = torch.tensor([value], dtype=torch.int64, device=collective_device())
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return int(box)


# -- the plan ----------------------------------------------------------------------------------


def _generator(kind: str, table_rank: int, world: int, kernel: str):
    if kind == "table_wise":
        return table_wise(rank=table_rank, compute_kernel=kernel)
    if kind == "row_wise":
        return row_wise(compute_kernel=kernel)
    if kind == "column_wise":
        return column_wise(ranks=list(range(world)), compute_kernel=kernel)
    return data_parallel()


def _bytes_per_rank(kind: str, rows: int, dim: int, world: int, factor: float) -> list[float]:
    """Bytes of one table (rows x dim float32, times ``factor`` for optimizer state) per rank;
    table_wise tables are placed later."""
    full = rows * dim * 4 * factor
    if kind == "data_parallel":
        return [full] * world
    return [full / world] * world  # row_wise and column_wise: even slices


def collections(model: nn.Module) -> dict[str, EmbeddingBagCollection]:
    """Every embedding collection of ``model`` by module path (after ``EntityTables.as_bags``)."""
    for module in model.modules():
        if isinstance(module, EntityTables):
            module.as_bags()
    return {p: m for p, m in model.named_modules() if isinstance(m, EmbeddingBagCollection)}


def plan_tables(model: nn.Module, config: DistributedConfig, world: int) -> ShardingPlan:
    """Each table's sharding from ``config``; a clear error for a plan that cannot run."""
    found = collections(model)
    if not found:
        raise ValueError("distributed: the model has no embedding tables to shard")
    sharder = sharder_of(config)
    kernel = "dense" if config.fused_optimizer == "none" else "fused"
    factor = 3.0 if config.fused_optimizer == "none" else 2.0  # Adam: 2 moments; Adagrad: 1
    load = [0.0] * world
    plans, named = {}, set()
    for path, ebc in found.items():
        tables = sorted(
            ebc.embedding_bag_configs(), key=lambda t: -t.num_embeddings * t.embedding_dim
        )
        per_table = {}
        for t in tables:
            named.add(t.name)
            kind = config.tables.get(t.name, config.sharding)
            _check_table(t.name, kind, t.num_embeddings, t.embedding_dim, world)
            share = _bytes_per_rank(kind, t.num_embeddings, t.embedding_dim, world, factor)
            owner = min(range(world), key=lambda r: load[r])  # table_wise: least loaded rank
            if kind == "table_wise":
                share = [0.0] * world
                share[owner] = t.num_embeddings * t.embedding_dim * 4 * factor
            load = [a + b for a, b in zip(load, share, strict=True)]
            per_table[t.name] = _generator(kind, owner, world, kernel)
        plans[path] = construct_module_sharding_plan(
            ebc,
            per_table,
            sharder=sharder,
            local_size=world,
            world_size=world,
            device_type="cuda" if config.backend == "nccl" else "cpu",
        )
    unknown = sorted(set(config.tables) - named)
    if unknown:
        raise ValueError(f"distributed.tables names {unknown}; the model's tables: {sorted(named)}")
    _check_budget(load, config.memory_budget_mb)
    return ShardingPlan(plans)


def _check_table(name: str, kind: str, rows: int, dim: int, world: int) -> None:
    if kind == "row_wise" and rows < world:
        raise ValueError(f"table {name!r}: {rows} rows cannot be split row-wise over {world} ranks")
    if kind == "column_wise" and dim % world:
        raise ValueError(
            f"table {name!r}: width {dim} cannot be split column-wise over {world} ranks"
        )


def _check_budget(load: list[float], budget_mb: float) -> None:
    if budget_mb <= 0:
        return
    worst = max(range(len(load)), key=lambda r: load[r])
    if load[worst] > budget_mb * 2**20:
        raise ValueError(
            f"distributed: the plan puts {load[worst] / 2**20:.1f} MiB of tables and optimizer "
            f"state on rank {worst}, over distributed.memory_budget_mb={budget_mb:g}; shard the "
            "largest tables row_wise or add ranks"
        )


def sharder_of(config: DistributedConfig, lr: float = 0.0) -> EmbeddingBagCollectionSharder:
    if config.fused_optimizer == "none":
        return EmbeddingBagCollectionSharder()
    # Imported here: FBGEMM's optimizer enum is only needed for the fused kernel.
    from fbgemm_gpu.split_embedding_configs import EmbOptimType

    return EmbeddingBagCollectionSharder(
        fused_params={
            "optimizer": getattr(EmbOptimType, config.fused_optimizer.upper()),
            "learning_rate": lr,
        }
    )


# -- the sharded model -------------------------------------------------------------------------


class ShardedModel:
    """A model whose embedding collections are sharded over the group; ``module`` is the model
    with sharded collections in place (call its methods as usual on every rank, in step)."""

    def __init__(self, model: nn.Module, config: DistributedConfig, *, lr: float) -> None:
        world = world_size()
        # A model built on the meta device has no values: DMP initialises its shards instead.
        on_meta = any(p.is_meta for p in model.parameters())
        full = None if on_meta else {k: v.detach().clone() for k, v in model.state_dict().items()}
        plan = plan_tables(model, config, world)
        device = (
            torch.device("cuda", torch.cuda.current_device())
            if config.backend == "nccl"
            else torch.device("cpu")
        )
        self.device = device
        self.dmp = DistributedModelParallel(
            model,
            device=device,
            plan=plan,
            sharders=[sharder_of(config, lr=lr)],
            init_data_parallel=False,
        )
        self.module = self.dmp.module
        self.config = config
        for module in self.module.modules():
            if isinstance(module, EntityTables | EntityBags):
                module.common_stride = largest_over_ranks
        if full is not None:
            self.load_full(bag_keys(full, self.module))

    def fetch_whole(self) -> list[torch.Tensor]:
        """The tables the model reads whole (``whole_tables``: tied output layers), fetched
        through the shards for this step."""
        names = tuple(getattr(self.module, "whole_tables", ()))
        if not names:
            return []
        tables = next(m for m in self.module.modules() if isinstance(m, EntityTables))
        return tables.fetch_whole(names, self.device)

    # -- parameters --------------------------------------------------------------------------

    def sharded_keys(self) -> set[str]:
        return {k for k, v in self.module.state_dict().items() if isinstance(v, ShardedTensor)}

    def dense_parameters(self) -> dict[str, nn.Parameter]:
        """Parameters the trainer's optimizer steps: everything not updated in the backward
        pass by a fused kernel (with the dense kernel, sharded tables too)."""
        return dict(in_backward_optimizer_filter(self.module.named_parameters()))

    def replicated(self) -> list[nn.Parameter]:
        sharded = self.sharded_keys()
        return [p for k, p in self.module.named_parameters() if k not in sharded]

    def unread_tables(self) -> list[nn.Parameter]:
        """The parameters of ``EntityBags`` tables no rank read this step (the record is then
        cleared). Unsharded, such a table gets no gradient, so no optimizer step; the sharded
        dense kernel gives every table of a group a gradient, zeros where unread, which Adam's
        momentum would turn into a step: the trainer leaves these out of its step."""
        bags = [m for m in self.module.modules() if isinstance(m, EntityBags)]
        if not bags:
            return []
        names = sorted({n for b in bags for n in b.sizes})
        read = torch.tensor([float(any(n in b.read for b in bags)) for n in names],
                            device=collective_device())  # fmt: skip
        if world_size() > 1:
            dist.all_reduce(read)
        for b in bags:
            b.read.clear()
        flags = zip(names, read.tolist(), strict=True)
        unread = tuple(f"embedding_bags.{n}.weight" for n, r in flags if r == 0)
        if not unread:
            return []
        return [p for k, p in self.dense_parameters().items() if k.endswith(unread)]

    def average_gradients(self) -> None:
        """Average the replicated parameters' gradients over the ranks (one all-reduce); a
        parameter no rank used keeps no gradient, as in one process."""
        params = self.replicated()
        if world_size() == 1 or not params:
            return
        used = torch.tensor([float(p.grad is not None) for p in params], device=collective_device())
        flat = torch.cat(
            [
                p.grad.reshape(-1)
                if p.grad is not None
                else torch.zeros(p.numel(), device=p.device)
                for p in params
            ]
        )
        dist.all_reduce(used)
        dist.all_reduce(flat)
        flat /= world_size()
        offset = 0
        for p, n_used in zip(params, used.tolist(), strict=True):
            part = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
            p.grad = part.clone() if n_used > 0 else None

    # -- whole tensors -----------------------------------------------------------------------

    def load_full(self, full: Mapping[str, torch.Tensor]) -> None:
        """Copy whole (unsharded) tensors into this rank's shards and replicas."""
        with torch.no_grad():
            for key, value in self.module.state_dict().items():
                if isinstance(value, ShardedTensor):
                    for shard in value.local_shards():
                        shard.tensor.copy_(shard_of(full[key], shard.metadata))
                else:
                    value.copy_(full[key])

    def full_state(self) -> dict[str, torch.Tensor] | None:
        """The whole state dict on rank 0 (None elsewhere), every shard gathered."""
        out = {}
        for key, value in self.module.state_dict().items():
            if isinstance(value, ShardedTensor):
                device = collective_device()
                whole = (torch.zeros(value.size(), dtype=value.dtype, device=device)
                         if rank() == 0 else None)  # fmt: skip
                value.gather(dst=0, out=whole)
                out[key] = whole.cpu() if whole is not None else None
            else:
                out[key] = value.detach().clone()
        return out if rank() == 0 else None
