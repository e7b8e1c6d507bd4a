"""Checkpoint files: written atomically, so a run killed at any moment leaves a readable one.

A training checkpoint holds the model, optimizer and scheduler states, every RNG state, the data
position (epoch, step), the early-stopping state, and whatever the caller adds (configuration,
vocabularies), so ``recsys-evaluate`` can rebuild the model and its data from the file alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

CHECKPOINT = "checkpoint.pt"  # latest state, for resuming
BEST = "best.pt"  # the weights with the best validation metric, for evaluation and serving


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / BEST if (path / BEST).is_file() else path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    # Checkpoints hold numpy RNG states and plain containers besides tensors.
    return torch.load(path, map_location=map_location, weights_only=False)
