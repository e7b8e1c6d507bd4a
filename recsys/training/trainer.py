"""The training loop every model shares: epochs of batches, validation, early stopping, resume.

``Trainer.fit`` trains ``model`` by minimising ``task(model, batch, generator)`` over a dataset's
epochs (``dataset.epoch(batch_size=, seed=, epoch=, start_step=)``), validates with a callable
returning metrics, keeps the best weights by ``monitor`` (early stopping after ``patience``
validations without improvement), and checkpoints after every epoch (and every
``checkpoint_every_steps`` steps when set). ``fit(resume=True)`` continues from the checkpoint in
``run_dir``: with the seeding scheme of ``recsys.training.seeding`` a run killed at any moment and
resumed ends with the same weights and metrics as an uninterrupted run (on CPU, same threads).

Mixed precision (bfloat16 autocast, no loss scaling needed) is used on CUDA when ``amp``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from recsys.models.row_dropout import whole_batch_rows
from recsys.training.checkpoint import BEST, CHECKPOINT, load_checkpoint, save_checkpoint
from recsys.training.logger import RunLogger
from recsys.training.seeding import rng_state, seed_everything, set_rng_state, step_generator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainerConfig:
    device: str = "cpu"  # cpu | cuda | cuda:N
    max_epochs: int = 100
    max_seconds: float = 0.0  # stop after this much training time (checked per step); 0: no limit
    patience: int = 10  # validations without improvement before stopping (0: never stop early)
    batch_size: int = 128
    bucket_pool: int = (
        0  # > 0: batch windows of similar length, sorted in pools of this many batches
    )
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 0.0  # max gradient norm; 0: no clipping
    amp: bool = True  # bfloat16 autocast on CUDA (ignored on CPU)
    # Dropout masks drawn per row of the whole batch from the step's seed
    # (recsys.models.row_dropout), so a batch split over ranks is dropped as in one process.
    row_keyed_dropout: bool = False
    seed: int = 0
    num_threads: int = 0  # torch intra-op threads on CPU; 0: leave as is
    eval_every: int = 1  # epochs between validations
    monitor: str = "ndcg@10"
    val_max_users: int | None = 10_000
    checkpoint: bool = True
    checkpoint_every_steps: int = 0  # also checkpoint mid-epoch; 0: only after each epoch
    log_every_steps: int = 50
    progress: bool = True
    # Sharded training over torchrun's processes (recsys.training.distributed.DistributedConfig);
    # None or enabled=false: one process.
    distributed: Mapping | None = None


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # the epoch in progress (or next to start)
    step: int = 0  # batches of that epoch already done
    global_step: int = 0
    best_value: float = -math.inf
    best_epoch: int = -1
    bad_validations: int = 0
    stopped: bool = False
    loss_sum: float = 0.0  # over the epoch in progress
    history: list[dict] = field(default_factory=list)  # one row per validation


@dataclass(frozen=True)
class FitResult:
    best_epoch: int
    best_value: float
    epochs: int
    history: list[dict]
    seconds: float
    sequences_per_second: float
    train_seconds: float = 0.0  # without validation
    steps: int = 0


class Trainer:
    def __init__(
        self,
        *,
        config: TrainerConfig,
        model: nn.Module,
        task: nn.Module,
        dataset,
        validate: Callable[[], Mapping[str, float]] | None = None,
        run_dir: str | Path | None = None,
        extra_state: Mapping[str, object] | None = None,
    ) -> None:
        self.config = config
        self.device = torch.device(config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("trainer.device=cuda but CUDA is not available")
        if config.num_threads and self.device.type == "cpu":
            torch.set_num_threads(config.num_threads)
        self.model, self.task = model.to(self.device), task.to(self.device)
        self.dataset, self.validate = dataset, validate
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.extra_state = dict(extra_state or {})
        # The fused kernel is several times faster on the dense embedding tables (CPU and CUDA).
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
        )
        warmup = max(config.warmup_steps, 0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
        )
        self.state = TrainState()
        self._best_in_memory: dict[str, torch.Tensor] | None = None

    # -- checkpoints -------------------------------------------------------------------------

    def _checkpoint_state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "train_state": asdict(self.state),
            "trainer_config": asdict(self.config),
            **self.extra_state,
        }

    def save(self) -> None:
        if self.run_dir is not None and self.config.checkpoint:
            save_checkpoint(self._checkpoint_state(), self.run_dir / CHECKPOINT)

    def save_best(self) -> None:
        """Record the model as it is now as the best one (e.g. after a post-hoc calibration)."""
        self._save_best()

    def _save_best(self) -> None:
        state = {"model": self.model.state_dict(), "epoch": self.state.epoch, **self.extra_state}
        if self.run_dir is not None and self.config.checkpoint:
            save_checkpoint(state, self.run_dir / BEST)
        else:
            self._best_in_memory = {k: v.detach().clone() for k, v in state["model"].items()}

    def _restore(self) -> bool:
        path = self.run_dir / CHECKPOINT if self.run_dir is not None else None
        if path is None or not path.is_file():
            return False
        ckpt = load_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        self.state = TrainState(**ckpt["train_state"])
        log.info("resumed from %s at epoch %d step %d", path, self.state.epoch, self.state.step)
        return True

    def load_best(self) -> None:
        """Put the best validated weights (or the last ones when never validated) in the model."""
        if self._best_in_memory is not None:
            self.model.load_state_dict(self._best_in_memory)
        elif self.run_dir is not None and (self.run_dir / BEST).is_file():
            self.model.load_state_dict(load_checkpoint(self.run_dir / BEST, self.device)["model"])

    # -- the loop ----------------------------------------------------------------------------

    def _autocast(self):
        enabled = self.config.amp and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _dropout_rows(self, generator, batch, start: int = 0, n_rows: int | None = None):
        """With ``row_keyed_dropout``, the block's dropout masks are the rows of ``batch`` in
        the whole batch (``n_rows`` from ``start``; default: the batch is the whole), drawn
        from the step's seed."""
        if not self.config.row_keyed_dropout:
            return contextlib.nullcontext()
        size = batch.size
        seed = (generator.initial_seed() * 0x9E3779B97F4A7C15 + 1) % 2**63  # not the task's
        n_rows = size if n_rows is None else n_rows
        return whole_batch_rows(seed, start=start, stop=start + size, n_rows=n_rows)

    def _train_step(self, batch, generator) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        with self._autocast(), self._dropout_rows(generator, batch):
            loss, _ = self.task(self.model, batch, generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def _run_epoch(self, logger: RunLogger, bar: tqdm) -> None:
        c, s = self.config, self.state
        self.model.train()
        batches = self.dataset.epoch(
            batch_size=c.batch_size,
            seed=c.seed,
            epoch=s.epoch,
            start_step=s.step,
            bucket_pool=c.bucket_pool,
        )
        # The epoch's loss sum stays on the device; reading it back syncs, so only when logging.
        total = torch.tensor(s.loss_sum, dtype=torch.float64, device=self.device)
        for batch in batches:
            loss = self._train_step(batch, step_generator(c.seed, s.epoch, s.step))
            total += loss.double()
            s.step, s.global_step = s.step + 1, s.global_step + 1
            bar.update(1)
            if s.global_step % c.log_every_steps == 0:
                value = self._check_loss(loss)
                logger.scalars({"train/loss": value}, s.global_step)
                bar.set_postfix(loss=f"{value:.4f}")
            if c.checkpoint_every_steps and s.step % c.checkpoint_every_steps == 0:
                s.loss_sum = float(total)
                self.save()
            if self._time_is_up():
                self._out_of_time = True
                break
        s.loss_sum = self._check_loss(total)

    def _time_is_up(self) -> bool:
        """Whether ``max_seconds`` of training have passed (checked after every step)."""
        c = self.config
        elapsed = self._train_seconds + time.perf_counter() - self._t0
        return bool(c.max_seconds) and elapsed > c.max_seconds

    def _check_loss(self, loss: torch.Tensor) -> float:
        value = float(loss)
        if not math.isfinite(value):
            s = self.state
            raise FloatingPointError(f"epoch {s.epoch} step {s.step}: loss is {value}")
        return value

    def _end_epoch(self, logger: RunLogger, seconds: float) -> None:
        c, s = self.config, self.state
        n_steps = self.dataset.n_batches(c.batch_size)
        row: dict = {"epoch": s.epoch, "train/loss": s.loss_sum / max(n_steps, 1)}
        row["time/epoch_seconds"] = seconds
        if self.validate is not None and (s.epoch + 1) % c.eval_every == 0:
            self.model.eval()
            t0 = time.perf_counter()
            with torch.no_grad(), self._autocast():
                metrics = dict(self.validate())
            row["time/val_seconds"] = time.perf_counter() - t0
            row.update({f"val/{k}": v for k, v in metrics.items()})
            self._early_stopping(float(metrics[c.monitor]))
        s.history.append(row)
        log.info("epoch %d: %s", s.epoch, {k: round(v, 5) for k, v in row.items() if k != "epoch"})
        logger.scalars({k: v for k, v in row.items() if k != "epoch"}, s.epoch + 1)
        s.epoch, s.step, s.loss_sum = s.epoch + 1, 0, 0.0

    def _early_stopping(self, value: float) -> None:
        s = self.state
        if value > s.best_value:
            s.best_value, s.best_epoch, s.bad_validations = value, s.epoch, 0
            self._save_best()
        else:
            s.bad_validations += 1
            s.stopped = 0 < self.config.patience <= s.bad_validations

    def _train_epoch(self, logger: RunLogger, n_steps: int) -> tuple[int, float]:
        """One (possibly resumed) epoch of steps: (sequences trained on, seconds)."""
        c = self.config
        t0 = self._t0 = time.perf_counter()
        skipped = self.state.step
        with tqdm(total=n_steps, initial=skipped, desc=f"epoch {self.state.epoch}",
                  leave=False, disable=not c.progress) as bar:  # fmt: skip
            self._run_epoch(logger, bar)
        done = min(self.state.step * c.batch_size, len(self.dataset))
        return done - min(skipped * c.batch_size, len(self.dataset)), time.perf_counter() - t0

    def fit(self, *, resume: bool = False) -> FitResult:
        """Train until ``max_epochs``, early stopping or ``max_seconds``; keep the best weights."""
        c = self.config
        if not (resume and self._restore()):
            seed_everything(c.seed)
        logger = RunLogger(self.run_dir, purge_step=self.state.global_step or None)
        n_steps = self.dataset.n_batches(c.batch_size)
        started, start_epoch, seen = time.perf_counter(), self.state.epoch, 0
        self._train_seconds, self._out_of_time = 0.0, False
        epochs = tqdm(range(self.state.epoch, c.max_epochs), desc="epochs", disable=not c.progress)
        for _ in epochs:
            if self.state.stopped or self._out_of_time:
                break
            n_seen, seconds = self._train_epoch(logger, n_steps)
            seen, self._train_seconds = seen + n_seen, self._train_seconds + seconds
            if self.state.step < n_steps:  # out of time mid-epoch
                self.save()
                break
            self._end_epoch(logger, seconds)
            self.save()
            last = self.state.history[-1]
            epochs.set_postfix({k: f"{v:.4f}" for k, v in last.items() if k == f"val/{c.monitor}"})
        if self.validate is None:
            self._save_best()
        self.load_best()
        seconds = time.perf_counter() - started
        logger.close()
        log.info("trained %d epochs from %d in %.1f s", self.state.epoch - start_epoch,
                 start_epoch, seconds)  # fmt: skip
        train_s = self._train_seconds
        return FitResult(
            best_epoch=self.state.best_epoch,
            best_value=self.state.best_value,
            epochs=self.state.epoch,
            history=list(self.state.history),
            seconds=seconds,
            sequences_per_second=seen / max(train_s, 1e-9),
            train_seconds=train_s,
            steps=self.state.global_step,
        )
