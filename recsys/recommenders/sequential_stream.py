"""Ranks without the data: the sequential model trained on streamed windows beside rank 0.

With ``trainer.distributed.input.mode=streamed`` only rank 0 of ``recsys-train`` loads the world
(it validates, evaluates and writes the window file); every other rank gets from it a
``StreamPlan`` (the model's architecture with its data-fitted sizes, side features, loss, the
entity counts the loss corrects for, and what the windows need) and reads only its own row
groups of the window file, so what it holds is the model, the plan and one chunk of windows.
Built from the same seed and plan, every rank starts from the same weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recsys.data.parquet_shards import InputConfig
from recsys.inputs.tokens import TokenLog
from recsys.inputs.window_file import WindowSource
from recsys.models.sequential import SequentialConfig
from recsys.tasks.sequential import LossConfig, SequentialTask
from recsys.training.distributed_trainer import make_trainer, share_from_rank_zero, streamed_input
from recsys.training.trainer import TrainerConfig


@dataclass(frozen=True)
class StreamPlan:
    """What a rank needs to train the sequential model on streamed windows without the data."""

    module: Callable[..., nn.Module]
    model_config: SequentialConfig  # with the sizes read off the data
    side_features: Mapping[str, Mapping[str, np.ndarray]]
    loss: LossConfig
    counts: Mapping[str, np.ndarray]  # per head table, how often each entity occurs
    window_args: Mapping[str, object]  # training_windows' keyword arguments
    targets: str
    live: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None
    validates: bool  # rank 0 validates (every rank joins its broadcast of the metrics)
    calibrates: bool  # rank 0 records best weights again after calibrating (a barrier)

    def model(self, seed: int) -> nn.Module:
        """A freshly initialised model, as ``SequentialRecommender.build`` makes it."""
        torch.manual_seed(seed)
        return self.module(self.model_config, side_features=dict(self.side_features))

    def task(self, model: nn.Module) -> SequentialTask:
        return SequentialTask(self.loss, n_entities=model.tables.sizes, counts=dict(self.counts))

    def source(self, tokens: TokenLog | None, config: InputConfig, sizes) -> WindowSource:
        """The window file's source: written from ``tokens`` by rank 0, read by every rank."""
        return WindowSource(tokens, self.window_args, config, targets=self.targets,
                            live=self.live, n_entities=sizes)  # fmt: skip


def _validated_on_rank_zero() -> dict[str, float]:
    raise RuntimeError("validation runs on rank 0, which holds the data")


def follow_streamed(trainer: TrainerConfig, *, run_dir: str | Path, resume: bool) -> None:
    """Train on this rank's part of the window file with rank 0's plan (no data loaded here)."""
    plan = share_from_rank_zero(None, trainer)
    if not isinstance(plan, StreamPlan):
        raise RuntimeError("streamed input: rank 0 sent no training plan")
    model = plan.model(trainer.seed)
    fitter = make_trainer(
        config=trainer,
        model=model,
        task=plan.task(model),
        dataset=plan.source(None, streamed_input(trainer), model.tables.sizes),
        validate=_validated_on_rank_zero if plan.validates else None,
        run_dir=run_dir,
    )
    fitter.fit(resume=resume)
    if plan.calibrates:
        fitter.save_best()
