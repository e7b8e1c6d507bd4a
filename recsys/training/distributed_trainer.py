"""The shared training loop on several processes: ``torchrun ... recsys-train trainer=distributed``.

``DistributedTrainer`` is ``Trainer`` with the model's embedding tables sharded over the ranks
(``recsys.training.distributed``) and everything else replicated. Each global batch of the
single-process run is split into contiguous blocks of rows, one per rank
(``recsys.inputs.batch_parts``), so an epoch visits the same windows in the same order at any
world size. The objective is the single
process's: each rank's loss is its term of the whole batch's loss (per-head means over the whole
batch's targets; for the two-tower, every row's positive among the in-batch negatives), which the
task computes from what the ranks share of their rows (``recsys.tasks.whole_batch``). With
``distributed.input.mode=streamed`` a dataset that offers ``for_rank`` (the sequential model's
``WindowSource``) is instead written once and read by each rank from its own row groups in
chunks (``recsys.inputs.window_file``), as many steps an epoch as one process takes. The
single-process model (``plain``) stays the one that is validated, saved as ``best.pt`` and
restored by ``recsys-evaluate`` / ``recsys-index`` / ``recsys-serve``: after each epoch the
shards are gathered into it on rank 0, which validates and broadcasts the metrics, so every
rank stops early together. Training checkpoints are DCP folders (``checkpoint_dcp/``) any world size
resumes from. Only rank 0 logs, shows progress and writes files other than DCP shards.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import resource
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.distributed as dist

from recsys.tasks.whole_batch import WholeBatch
from recsys.training import distributed as sharding
from recsys.training import distributed_checkpoint as dcp_state
from recsys.training.checkpoint import BEST, load_checkpoint, save_checkpoint
from recsys.training.seeding import rng_state, set_rng_state
from recsys.training.state_keys import plain_state
from recsys.training.trainer import Trainer, TrainerConfig, TrainState

DCP_DIR = "checkpoint_dcp"  # latest training state, one folder written by every rank
META = "meta.pt"  # in it: data position, scheduler, RNG states per rank, configuration

log = logging.getLogger(__name__)


class RankPart:
    """A dataset seen by one rank: its rows of every global batch, as ``micro`` parts.

    Each batch is split into ``world * micro`` contiguous parts (``recsys.inputs.batch_parts``);
    rank r runs parts r, r + world, ... one after another; together the parts are the single
    process's batch at every (world, micro).
    """

    def __init__(self, dataset, *, rank: int, world: int, micro: int, batch_size: int) -> None:
        smallest = dataset.smallest_batch(batch_size)
        if smallest < world * micro:
            raise ValueError(
                f"distributed: the data cannot be split over {world} ranks x {micro} micro-"
                f"batches: with trainer.batch_size={batch_size} an epoch's smallest batch holds "
                f"{smallest} rows (of {len(dataset)}), fewer than one per part; change the "
                "batch size or the number of processes"
            )
        self.dataset = dataset
        self.parts = [(rank + world * i, world * micro) for i in range(micro)]

    def __len__(self) -> int:
        return len(self.dataset)

    def n_batches(self, batch_size: int) -> int:
        return self.dataset.n_batches(batch_size)

    def epoch(self, **kwargs) -> Iterator[list]:
        """Per step, this rank's parts of the global batch."""
        return zip(*(self.dataset.epoch(**kwargs, part=p) for p in self.parts), strict=True)


class DistributedTrainer(Trainer):
    def __init__(
        self,
        *,
        config: TrainerConfig,
        model: torch.nn.Module,
        task: torch.nn.Module,
        dataset,
        validate: Callable[[], Mapping[str, float]] | None = None,
        run_dir: str | Path | None = None,
        extra_state: Mapping[str, object] | None = None,
    ) -> None:
        dist_config = sharding.DistributedConfig.of(config.distributed)
        self.rank, self.world = sharding.start(dist_config)
        if config.grad_clip > 0:
            raise ValueError("trainer.grad_clip is not supported with trainer.distributed")
        if not hasattr(task, "shares"):
            raise ValueError(
                f"trainer.distributed: the task {type(task).__name__} has no shares(batch), so "
                "a part of a batch cannot take its term of the whole batch's loss"
            )
        main = self.rank == 0
        self.shared_dir = Path(run_dir) if run_dir is not None else None
        super().__init__(
            config=config if main else replace(config, progress=False),
            model=model,
            task=task,
            dataset=self._rank_data(dataset, dist_config, config.batch_size),
            validate=self._on_main(validate) if validate is not None else None,
            run_dir=run_dir if main else None,
            extra_state=extra_state,
        )
        self.plain = self.model
        self.sharded = sharding.ShardedModel(copy.deepcopy(model), dist_config, lr=config.lr)
        self.model = self.sharded.module
        params = list(self.sharded.dense_parameters().values())
        self.optimizer = torch.optim.Adam(
            params, lr=config.lr, weight_decay=config.weight_decay, fused=True
        )
        warmup = max(config.warmup_steps, 0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
        )

    def _rank_data(self, dataset, config: sharding.DistributedConfig, batch_size: int):
        """This rank's view of the data: its rows of every in-memory batch, or its own part of
        the streamed file (``dataset.for_rank``)."""
        split = {"rank": self.rank, "world": self.world, "micro": config.micro_batches,
                 "batch_size": batch_size}  # fmt: skip
        if config.input.mode != "streamed":
            return RankPart(dataset, **split)
        if not hasattr(dataset, "for_rank"):
            raise ValueError(
                f"distributed.input.mode=streamed: {type(dataset).__name__} has no streamed form "
                "(only the sequential models stream their windows); use distributed.input."
                "mode=memory"
            )
        return dataset.for_rank(**split, folder=self.shared_dir, share=sharding.broadcast)

    def fit(self, *, resume: bool = False):
        """``Trainer.fit``; rank 0 also writes ``ranks.json`` (per rank: peak memory, steps,
        and with streamed input what it read)."""
        result = super().fit(resume=resume)
        mine = {
            "rank": self.rank,
            "peak_rss_mib": peak_rss_mib(),
            "steps": self.state.global_step,
            "train_seconds": result.train_seconds,
        }
        if hasattr(self.dataset, "stats"):
            mine["input"] = self.dataset.stats()
        rows = [None] * self.world
        dist.all_gather_object(rows, mine)
        if self.rank == 0 and self.shared_dir is not None:
            (self.shared_dir / "ranks.json").write_text(json.dumps(rows, indent=2) + "\n")
        return result

    def _on_main(self, validate: Callable[[], Mapping[str, float]]):
        """Validation on rank 0 (which holds the gathered model), its metrics on every rank."""

        def run() -> dict[str, float]:
            return sharding.broadcast(dict(validate()) if self.rank == 0 else None)

        return run

    # -- steps ---------------------------------------------------------------------------------

    def _time_is_up(self) -> bool:
        """Out of time when any rank is: every rank stops after the same step (a rank that
        stopped alone would wait in the next checkpoint's collectives for the others' step)."""
        if not self.config.max_seconds:
            return False
        return bool(sharding.largest_over_ranks(int(super()._time_is_up())))

    def _train_step(self, parts: list, generator) -> torch.Tensor:
        """One step of the whole batch's loss: each part adds its term, scaled by the world
        size because the ranks' gradients are averaged; returns this rank's estimate of the
        whole loss (its terms times the world size; their mean over the ranks is the loss)."""
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        state = generator.get_state()
        shares = self._gather_shares(parts)
        for i, batch in enumerate(parts):
            generator.set_state(state)  # every part draws what the whole batch would
            whole = WholeBatch(shares, index=self.rank + self.world * i)
            rows = (batch, whole.start, whole.n_rows)
            with self._autocast(), self._dropout_rows(generator, *rows):
                tables = self.sharded.fetch_whole()
                batch = batch.to(self.device, non_blocking=True)
                loss, _ = self.task(self.model, batch, generator, whole=whole)
                # Tables fetched whole join the loss with weight 0, so every rank runs the same
                # collectives backward even when a head has no target in its rows.
                loss = loss + sum((0.0 * w.sum() for w in tables), loss.new_zeros(()))
            (loss * self.world).backward()
            total += loss.detach().double() * self.world
        unread = self.sharded.unread_tables()
        self.sharded.average_gradients()
        with _left_out(self.optimizer, unread):
            self.optimizer.step()
        self.scheduler.step()
        return total

    def _gather_shares(self, parts: list) -> list:
        """Every part's ``task.shares`` in part order (part ``rank + world * i`` is this rank's
        ``i``-th), for the task to see the whole batch."""
        mine = [self.task.shares(batch) for batch in parts]
        every = [None] * self.world
        dist.all_gather_object(every, mine)
        return [every[r][i] for i in range(len(parts)) for r in range(self.world)]

    def _end_epoch(self, logger, seconds: float) -> None:
        total = torch.tensor([self.state.loss_sum], dtype=torch.float64,
                             device=sharding.collective_device())  # fmt: skip
        dist.all_reduce(total)
        self.state.loss_sum = float(total) / self.world  # the ranks' mean: the whole loss
        self._gather_plain()
        super()._end_epoch(logger, seconds)

    def _gather_plain(self) -> None:
        """Every shard gathered into the single-process model on rank 0."""
        full = self.sharded.full_state()
        if full is not None:
            self.plain.load_state_dict(plain_state(full, self.plain))

    # -- best weights (single-process format) --------------------------------------------------

    def _save_best(self) -> None:
        self._gather_plain()
        self.save_best()

    def save_best(self) -> None:
        """Record the single-process model as it is on rank 0 as the best one."""
        if self.rank == 0:
            state = {
                "model": self.plain.state_dict(),
                "epoch": self.state.epoch,
                **self.extra_state,
            }
            if self.shared_dir is not None and self.config.checkpoint:
                save_checkpoint(state, self.shared_dir / BEST)
            else:
                self._best_in_memory = {k: v.detach().clone() for k, v in state["model"].items()}
        sharding.barrier()

    def load_best(self) -> None:
        """The best weights into the single-process model on every rank."""
        sharding.barrier()
        best = self.shared_dir / BEST if self.shared_dir is not None else None
        if best is not None and best.is_file():
            self.plain.load_state_dict(load_checkpoint(best, self.device)["model"])
            return
        # Kept in memory on rank 0 only (no run folder, or trainer.checkpoint=false).
        state = sharding.broadcast(self._best_in_memory if self.rank == 0 else None)
        if state is not None:
            self.plain.load_state_dict(state)

    # -- training checkpoints (DCP) ------------------------------------------------------------

    def save(self) -> None:
        if self.shared_dir is None or not self.config.checkpoint:
            return
        final, tmp = self.shared_dir / DCP_DIR, self.shared_dir / f".{DCP_DIR}.tmp"
        if self.rank == 0 and tmp.exists():
            shutil.rmtree(tmp)
        sharding.barrier()
        dcp_state.save(self.sharded, tmp, self.optimizer)
        rngs = [None] * self.world
        dist.all_gather_object(rngs, rng_state())
        if self.rank == 0:
            meta = {
                "scheduler": self.scheduler.state_dict(),
                "rng": rngs,
                "world_size": self.world,
                "train_state": asdict(self.state),
                "trainer_config": asdict(self.config),
                **self.extra_state,
            }
            torch.save(meta, tmp / META)
            _swap(tmp, final)
        sharding.barrier()

    def _restore(self) -> bool:
        path = self.shared_dir / DCP_DIR if self.shared_dir is not None else None
        if path is None or not (path / META).is_file():
            return False
        # The meta file holds numpy RNG states and plain containers besides tensors.
        meta = torch.load(path / META, map_location="cpu", weights_only=False)
        dcp_state.load(self.sharded, path, self.optimizer)
        self.scheduler.load_state_dict(meta["scheduler"])
        same_world = meta["world_size"] == self.world
        set_rng_state(meta["rng"][self.rank] if same_world else meta["rng"][0])
        self.state = TrainState(**meta["train_state"])
        log.info(
            "resumed from %s (saved by %d ranks, now %d) at epoch %d step %d",
            path,
            meta["world_size"],
            self.world,
            self.state.epoch,
            self.state.step,
        )
        return True


@contextlib.contextmanager
def _left_out(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter]):
    """The optimizer without ``params`` (no step, no state change) for the block."""
    if not params:
        yield
        return
    skip = {id(p) for p in params}
    groups = [group["params"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in skip]
    try:
        yield
    finally:
        for group, kept in zip(optimizer.param_groups, groups, strict=True):
            group["params"] = kept


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _swap(new: Path, final: Path) -> None:
    """Replace the folder ``final`` by ``new``; a crash leaves one of them whole."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    if old.exists():
        shutil.rmtree(old)


def streamed_input(config: TrainerConfig) -> sharding.InputConfig | None:
    """The streamed-input settings when a distributed run streams its rows, else None."""
    section = sharding.DistributedConfig.of(config.distributed)
    return section.input if section.enabled and section.input.mode == "streamed" else None


def share_from_rank_zero(obj: object, config: TrainerConfig) -> object:
    """Rank 0's ``obj`` on every rank (the group started here when it is not yet)."""
    sharding.start(sharding.DistributedConfig.of(config.distributed))
    return sharding.broadcast(obj)


def make_trainer(*, config: TrainerConfig, **kwargs) -> Trainer:
    """A ``DistributedTrainer`` when ``config.distributed`` is enabled, else a ``Trainer``."""
    if sharding.DistributedConfig.of(config.distributed).enabled:
        return DistributedTrainer(config=config, **kwargs)
    return Trainer(config=config, **kwargs)
