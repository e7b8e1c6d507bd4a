"""TensorBoard logging of a training run: scalars, hyperparameters and an embedding projector.

Everything goes under ``<run_dir>/tensorboard``. A resumed run purges the events logged after
its checkpoint's step, so curves never double back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter


class RunLogger:
    """Scalars by tag (``train/loss``, ``val/ndcg@10``), hparams, and a projector sample."""

    def __init__(self, run_dir: str | Path | None, *, purge_step: int | None = None) -> None:
        self.writer = None
        if run_dir is not None:
            self.writer = SummaryWriter(
                log_dir=str(Path(run_dir) / "tensorboard"), purge_step=purge_step
            )

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        if self.writer is None:
            return
        for tag, value in values.items():
            if isinstance(value, int | float | np.floating | np.integer) and np.isfinite(value):
                self.writer.add_scalar(f"{prefix}{tag}", float(value), step)

    def hparams(self, hparams: Mapping[str, object], metrics: Mapping[str, float]) -> None:
        if self.writer is None:
            return
        flat = {
            k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in hparams.items()
        }
        finite = {
            f"hparam/{k}": float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float) and np.isfinite(v)
        }
        self.writer.add_hparams(flat, finite, run_name="hparams")

    def projector(
        self,
        weight: torch.Tensor,
        *,
        tag: str,
        labels: Sequence[str] | None = None,
        n: int = 1000,
        seed: int = 0,
        step: int = 0,
    ) -> None:
        """A seeded sample of ``n`` real rows (index >= 2) of an embedding table."""
        if self.writer is None or weight.shape[0] <= 2:
            return
        rng = np.random.default_rng(seed)
        rows = np.sort(
            rng.choice(np.arange(2, weight.shape[0]), min(n, weight.shape[0] - 2), False)
        )
        meta = [labels[i] for i in rows] if labels is not None else [str(i) for i in rows]
        vectors = weight.detach().float().cpu()[torch.from_numpy(rows)]
        self.writer.add_embedding(vectors, metadata=meta, tag=tag, global_step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
