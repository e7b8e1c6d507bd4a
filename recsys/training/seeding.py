"""Seeds and random-number-generator state, so that runs repeat and resumed runs match.

Which randomness comes from where:

* data order: a permutation that is a pure function of (seed, epoch) (``WindowDataset.order``);
* negatives sampled by a loss: a generator seeded from (seed, epoch, step) (``step_generator``);
* dropout: the global torch generator, whose state is saved in every checkpoint.

So a run resumed from a checkpoint at (epoch, step) draws exactly what the uninterrupted run drew.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """A CPU generator whose stream depends only on (seed, epoch, step)."""
    mixed = np.random.SeedSequence([seed, epoch, step]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(mixed) & (2**63 - 1))


def rng_state() -> dict:
    """Every global generator's state (python, numpy, torch CPU, torch CUDA when present)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
